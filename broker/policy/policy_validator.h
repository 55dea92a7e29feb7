// Semantic validation of a decoded policy, and its conversion to Policy.
//
// TextCodec checks only that the text fits the schema. This layer checks
// what the schema cannot say: names well-formed and unique, paths absolute
// and normalized, access fitting the kind, grants naming real capabilities,
// match criteria that are neither empty nor ambiguous, and the limits below.
// The lengths of lists it relies on ParsePolicy to have checked, before
// decoding (list_sizes.h).
// It fails closed: anything not understood is an error. Every error points
// at the offending value through the TextLocator, and all of them are
// collected (Diagnostics caps how many are shown).
#ifndef CAPBROKER_BROKER_POLICY_POLICY_VALIDATOR_H_
#define CAPBROKER_BROKER_POLICY_POLICY_VALIDATOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/checks.h"  // kMaxNameLength, kMaxPathLength
#include "broker/policy/diagnostics.h"
#include "broker/policy/policy.h"
#include "broker/policy/text_locator.h"
#include "schemas/policy.capnp.h"

namespace capbroker {

// Largest memory capability: a memfd is charged to the broker's memory.
inline constexpr uint64_t kMaxMemorySize = uint64_t{1} << 30;  // 1 GiB
// Permission bits a created file may have; setuid and setgid are refused
// on top of this.
inline constexpr uint32_t kModeMask = 07777;

// Validates `policy`, decoded from `locator.text()`, and converts it. On any
// error, adds it to `diagnostics` and returns nullopt: a policy is accepted
// whole or not at all. `source` becomes Policy::source(). Settings that
// `broker` could not honour are errors too (see BrokerContext). No list of
// `policy` may be longer than CheckListSizes allows.
std::optional<Policy> ValidatePolicy(policy::Policy::Reader policy,
                                     const TextLocator& locator,
                                     absl::string_view source,
                                     const BrokerContext& broker,
                                     Diagnostics& diagnostics);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_POLICY_VALIDATOR_H_
