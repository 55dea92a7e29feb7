#include "sdk/capctl/policy_commands.h"

#include <sys/resource.h>

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/policy_file.h"
#include "broker/policy/load_notes.h"
#include "broker/sandbox/settings.h"
#include "broker/policy/starter_policy.h"

namespace capbroker {

namespace {

// The limits of `service` above capctl's own hard limits, one note each.
// The broker that will load the file is not known here, nor its hard limits
// (BrokerContext::hard_limits unset): those of its systemd unit are not
// those of the shell capctl runs in, so neither an error nor an all-clear
// against capctl's own would be true. A limit above capctl's own is worth a
// look, and is noted; the broker checks against its own when it loads.
void NoteLimitsAboveOwn(const ServiceSpec& service, std::vector<std::string>& notes) {
  struct Limit {
    absl::string_view field;
    uint64_t value;
    int resource;
    absl::string_view name;  // RLIMIT_ and systemd's Limit names
  };
  for (const Limit& limit : {Limit{"openFiles", service.limits.open_files, RLIMIT_NOFILE,
                                   "NOFILE"},
                             Limit{"addressSpace", service.limits.address_space, RLIMIT_AS,
                                   "AS"},
                             Limit{"processes", service.limits.processes, RLIMIT_NPROC,
                                   "NPROC"},
                             Limit{"cpuSeconds", service.limits.cpu_seconds, RLIMIT_CPU,
                                   "CPU"}}) {
    rlimit own;
    if (limit.value == 0 ||
        getrlimit(static_cast<__rlimit_resource>(limit.resource), &own) != 0 ||
        limit.value <= own.rlim_max) {
      continue;
    }
    notes.push_back(absl::StrCat(
        "service '", service.name, "' sets ", limit.field, " ", limit.value,
        ", above this capctl's own hard RLIMIT_", limit.name, ", ", own.rlim_max,
        ": capbrokerd refuses this policy if it is above its own hard limit too (Limit",
        limit.name, "= in its systemd unit), which capctl cannot know"));
  }
}

// A note when `service` sets a user or group: capctl cannot know who the
// broker that will load the file runs as (BrokerContext::ids unset), and
// one that is not root can run services only as itself.
void NoteIdsOnlyARootBrokerCanUse(const ServiceSpec& service, std::vector<std::string>& notes) {
  if (!service.user.has_value() && !service.group.has_value()) return;
  std::vector<std::string> fields, ids;
  if (service.user.has_value()) {
    fields.push_back(absl::StrCat("user ", *service.user));
    ids.push_back(absl::StrCat("uid ", *service.user));
  }
  if (service.group.has_value()) {
    fields.push_back(absl::StrCat("group ", *service.group));
    ids.push_back(absl::StrCat("gid ", *service.group));
  }
  notes.push_back(absl::StrCat("service '", service.name, "' sets ",
                               absl::StrJoin(fields, " and "),
                               ": capbrokerd refuses this policy unless it runs as root or as ",
                               absl::StrJoin(ids, " and "),
                               " (a broker that is not root can run services only as itself)"));
}

}  // namespace

absl::StatusOr<PolicySummary> CheckPolicyFile(absl::string_view path) {
  // The broker that will load the file is not known here (BrokerContext's
  // cgroup, hard_limits and ids unset): what depends on its flags, its
  // limits and its user becomes a note.
  // Here, unlike in the broker, waiting for a slow file system to resolve
  // an `exe` blocks nobody else.
  BrokerContext context;
  context.resolve_program = [](const std::string& exe) {
    return ResolveProgramPath(exe, /*may_block=*/true);
  };
  context.check_followed_path = [](const std::string& path) {
    return CheckFollowedCapabilityPath(path, /*may_block=*/true);
  };
  absl::StatusOr<Policy> policy = LoadPolicyFile(path, context);
  if (!policy.ok()) return policy.status();
  PolicySummary summary;
  summary.capabilities = policy->capabilities().size();
  summary.principals = policy->principals().size();
  summary.services = policy->services().size();
  for (const ServiceSpec& service : policy->services()) {
    NoteLimitsAboveOwn(service, summary.notes);
    NoteIdsOnlyARootBrokerCanUse(service, summary.notes);
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
  for (std::string& note : LoadNotes(*policy)) summary.notes.push_back(std::move(note));
  return summary;
}

absl::string_view StarterPolicy() { return StarterPolicyText(); }

}  // namespace capbroker
