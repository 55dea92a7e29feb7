// Validation of the `services` of a policy, and their conversion to
// ServiceSpec. Part of ValidatePolicy (policy_validator.h); fails closed
// like the rest: every error is reported where it is, nothing half-kept.
#ifndef CAPBROKER_BROKER_POLICY_SERVICE_VALIDATOR_H_
#define CAPBROKER_BROKER_POLICY_SERVICE_VALIDATOR_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/checks.h"
#include "broker/policy/policy.h"
#include "schemas/policy.capnp.h"

namespace capbroker {

// The lengths of its lists are limited in list_sizes.h, and checked there,
// before the text is decoded.
inline constexpr size_t kMaxArgumentLength = 4096;
inline constexpr uint32_t kMaxRestartLimit = 1000;
inline constexpr uint32_t kMaxStartTimeoutMs = 600 * 1000;

// The names of a policy's principals, for resolving connect lists.
struct PrincipalNames {
  // name -> path of its definition. Principals and services share one name
  // space: ValidateServices adds the services' names.
  absl::flat_hash_map<std::string, std::string> where;
};

// Validates `list`. `principals` holds the principals' names; service names
// are added to it. `broker` says what the broker offers (see BrokerContext):
// memoryMax and pidsMax it could not apply are errors.
std::vector<ServiceSpec> ValidateServices(
    capnp::List<policy::Service>::Reader list, Checks& checks,
    const CapabilityNames& capabilities, PrincipalNames& principals,
    const BrokerContext& broker);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SERVICE_VALIDATOR_H_
