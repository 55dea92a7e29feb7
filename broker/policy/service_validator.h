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

// Validates `list`. `principal_names` holds the principals' names (and
// where each is defined); service names are added to it, since principals
// and services share one name space. `broker` says what the broker offers
// (see BrokerContext): memoryMax and pidsMax it could not apply are errors.
std::vector<ServiceSpec> ValidateServices(
    capnp::List<policy::Service>::Reader list, Checks& checks,
    const CapabilityNames& capabilities,
    absl::flat_hash_map<std::string, std::string>& principal_names,
    const BrokerContext& broker);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SERVICE_VALIDATOR_H_
