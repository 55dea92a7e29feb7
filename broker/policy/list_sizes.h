// The limits on the lengths of a policy's lists, and their check on
// TextLocator's tree, before capnp::TextCodec decodes the text.
//
// TextCodec builds a tree of the whole text, then a message of it: a 1 MiB
// file of 350,000 grants cost about 150 MB, in capctl and in the broker at
// every reload. A list over its limit is refused here instead, at the list,
// naming the limit, wherever it is: a list the schema limits, a list under
// a field the schema does not have, a list inside a list. This is the only
// check of these limits: ParsePolicy calls it before decoding, and the
// validators rely on it.
#ifndef CAPBROKER_BROKER_POLICY_LIST_SIZES_H_
#define CAPBROKER_BROKER_POLICY_LIST_SIZES_H_

#include <cstddef>

#include "broker/policy/diagnostics.h"
#include "broker/policy/text_locator.h"

namespace capbroker {

// They bound the broker's memory and the cost of a decision (linear in
// principals and grants) against a mistaken or hostile file; real
// policies are far smaller.
inline constexpr size_t kMaxCapabilities = 4096;
inline constexpr size_t kMaxPrincipals = 4096;
inline constexpr size_t kMaxGrantsPerPrincipal = 1024;
inline constexpr size_t kMaxServices = 256;
inline constexpr size_t kMaxServiceArguments = 256;
inline constexpr size_t kMaxServiceEnvironment = 256;
// Capabilities delivered at start: fds 3.. of the service.
inline constexpr size_t kMaxServiceGrants = 128;
inline constexpr size_t kMaxConnectEntries = 1024;
// A service's sandbox.restrictAddressFamilies holds at most one of each
// address family the schema knows (policy::AddressFamily): the limit is
// their number.
//
// Any other list, wherever it is, holds at most the most any limited list
// may hold.
inline constexpr size_t kMaxAnyListEntries = 4096;
//
// And all the lists together hold at most this many entries, counted in
// the text's order: the limits above are each one list's, and within them
// a 1 MiB file of 127 lists of 4096 numbers under a field the schema does
// not have (520,000 entries) took capctl to a peak of 138 MB, of 255
// principals of 1024 grants 81 MB, in the broker too at each reload. At
// this limit, decoding any accepted file peaks at about 25 MB (capctl's
// maximum RSS, /usr/bin/time -v; 6 MB for a small policy). What is
// refused still costs TextLocator's tree of the text: up to about 55 MB
// for a 1 MiB file of one-byte entries. 16 times the longest list: far
// above any real policy.
inline constexpr size_t kMaxPolicyListEntries = 65536;

// Adds an error to `diagnostics` for each list in `locator`'s tree (a
// policy's text, without syntax errors) that has more entries than its
// limit, and one at the entry, in the text's order, past
// kMaxPolicyListEntries. Cost: linear in the tree.
void CheckListSizes(const TextLocator& locator, Diagnostics& diagnostics);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_LIST_SIZES_H_
