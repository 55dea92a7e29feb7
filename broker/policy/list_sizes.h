// The limits on the lengths of a policy's lists and on the number of its
// values, and their check on TextLocator's tree, before capnp::TextCodec
// decodes the text.
//
// TextCodec builds a tree of the whole text, then a message of it: a 1 MiB
// file of 350,000 grants cost about 150 MB, in capctl and in the broker at
// every reload. A list over its limit, or a value past the total, is
// refused here instead, at the list or the value, naming the limit,
// wherever it is: a list the schema limits, a list under a field the
// schema does not have, a list inside a list. This is the only
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
// And the whole tree holds at most this many values (as TextLocator counts
// them: every field of a struct and every entry of a list, the root aside,
// in the text's order). TextCodec builds its tree of the whole text before it refuses a
// field the schema does not have or one given twice, and a field costs it
// more than a list entry: a 1 MiB file of one struct of 262,000 fields
// (`(a=0,a=0,...)`, or `(zz=(a=0,...))`) took capctl to a peak of 169 MB,
// of 175,000 fields `zz=()` 122 MB, of 127 lists of 4096 numbers under
// unknown fields (520,000 entries) 138 MB, in the broker too at each
// reload. At this limit, decoding a file peaks at about 49 MB (capctl's
// maximum RSS, /usr/bin/time -f %M: 65,536 fields `a=()` or `a=[]`; 47 MB
// for `a=0`; 23 MB for list entries; 26 MB for an accepted policy of 4096
// capabilities and 4096 principals, 45,000 values; 6 MB for a small one).
// What is refused costs only TextLocator's tree, which stops at the value
// past this limit (TextLocator::Parse's max_values): 19 MB for each of the
// 1 MiB files above, and for one of 524,000 one-byte list entries, most of
// it the tree of 65,537 values that a file at the limit has too (6 MB for
// a small policy; the same run measured 30 to 32 MB for the files of
// fields, 55 MB for the lists and 59 MB for the entries when the tree held
// the whole text). Real policies hold far fewer: a capability takes about
// 5 values, a principal 5 and one a grant.
inline constexpr size_t kMaxPolicyValues = 65536;

// Adds an error to `diagnostics` for each list in `locator`'s tree (a
// policy's text, without syntax errors, parsed by
// TextLocator::Parse(text, kMaxPolicyValues)) that has more entries than
// its limit, and one at the value past kMaxPolicyValues
// (locator.value_past_limit(); a field at its name). Lists after that
// value are not in the tree, so not checked: the text is refused already.
// Nor is a name after it: an entry still open at that value, whose list
// over its limit comes before its `name`, is named by its place
// ("services[0] has 70000 command arguments"), as one with no plain name
// is. Finding the name would mean reading on past the cut, the cost the
// cut is there to avoid; the place is exact, and the text is refused.
// A locator parsed to another limit is refused with an internal error,
// never checked in part. Cost: linear in the tree.
void CheckListSizes(const TextLocator& locator, Diagnostics& diagnostics);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_LIST_SIZES_H_
