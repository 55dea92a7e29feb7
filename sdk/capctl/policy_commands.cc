#include "sdk/capctl/policy_commands.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/policy_file.h"
#include "broker/policy/remote_paths.h"
#include "broker/policy/script_exes.h"
#include "broker/sandbox/settings.h"
#include "broker/policy/starter_policy.h"

namespace capbroker {

absl::StatusOr<PolicySummary> CheckPolicyFile(absl::string_view path) {
  // The broker that will load the file is not known here (BrokerContext's
  // cgroup unset): what depends on its flags becomes a note.
  // Here, unlike in the broker, waiting for a slow file system to resolve
  // an `exe` blocks nobody else.
  BrokerContext context;
  context.resolve_program = [](const std::string& exe) {
    return ResolveProgramPath(exe, /*may_block=*/true);
  };
  absl::StatusOr<Policy> policy = LoadPolicyFile(path, context);
  if (!policy.ok()) return policy.status();
  PolicySummary summary;
  summary.capabilities = policy->capabilities().size();
  summary.principals = policy->principals().size();
  summary.services = policy->services().size();
  for (const ServiceSpec& service : policy->services()) {
    std::string limits = sandbox::CgroupLimitNames(service.limits);
    if (limits.empty()) continue;
    summary.notes.push_back(absl::StrCat(
        "service '", service.name, "' sets ", limits,
        ": capbrokerd refuses this policy unless it runs with --cgroup DIR, a delegated "
        "cgroup v2 directory whose cgroup.subtree_control enables ",
        service.limits.memory_max != 0 && service.limits.pids_max != 0 ? "memory and pids"
        : service.limits.memory_max != 0                               ? "memory"
                                                                       : "pids"));
  }
  for (std::string& note : RemotePathNotes(*policy)) summary.notes.push_back(std::move(note));
  for (std::string& note : ScriptExeNotes(*policy)) summary.notes.push_back(std::move(note));
  return summary;
}

absl::string_view StarterPolicy() { return StarterPolicyText(); }

}  // namespace capbroker
