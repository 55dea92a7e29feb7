#include "sdk/capctl/policy_commands.h"

#include "broker/policy/broker_context.h"
#include "broker/policy/policy_file.h"
#include "broker/policy/starter_policy.h"

namespace capbroker {

absl::StatusOr<PolicySummary> CheckPolicyFile(absl::string_view path) {
  absl::StatusOr<Policy> policy = LoadPolicyFile(path, BrokerContext());
  if (!policy.ok()) return policy.status();
  return PolicySummary{policy->capabilities().size(), policy->principals().size()};
}

absl::string_view StarterPolicy() { return StarterPolicyText(); }

}  // namespace capbroker
