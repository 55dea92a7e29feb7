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

inline constexpr size_t kMaxServices = 256;
inline constexpr size_t kMaxServiceArguments = 256;
inline constexpr size_t kMaxServiceEnvironment = 256;
inline constexpr size_t kMaxArgumentLength = 4096;
// Capabilities delivered at start: fds 3.. of the service.
inline constexpr size_t kMaxServiceGrants = 128;
inline constexpr size_t kMaxConnectEntries = 1024;
inline constexpr uint32_t kMaxRestartLimit = 1000;
inline constexpr uint32_t kMaxStartTimeoutMs = 600 * 1000;

// The names of a policy's principals, for resolving connect lists.
struct PrincipalNames {
  // name -> path of its definition. Principals and services share one name
  // space: ValidateServices adds the services' names.
  absl::flat_hash_map<std::string, std::string> where;
  // The principals were refused whole (too many): every connect name would
  // look unknown, so connect lists are not resolved (noise otherwise).
  bool unchecked = false;
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
