#include "broker/service/launch_settings.h"

#include <tuple>

namespace capbroker::service {
namespace {

// C++17 has no defaulted operator==: each comparison lists every field of
// its struct. A field added to one and not here would never restart a
// service (a grant or a protection changed by a reload left in force), so
// the size of each struct is pinned here, as it is on the x86-64 and
// arm64 ABIs the broker is built for: a field added there breaks the build
// until these comparisons are revisited and the size updated.
static_assert(sizeof(sandbox::Protections) == 64,
              "a field of Protections was added or removed: compare it in Same, then "
              "update this size");
static_assert(sizeof(sandbox::ResourceLimits) == 80,
              "a field of ResourceLimits was added or removed: compare it in Same, then "
              "update this size");
static_assert(sizeof(CapabilitySpec) == 104,
              "a field of CapabilitySpec was added or removed: compare it in Same, then "
              "update this size");
static_assert(sizeof(ServiceSpec) == 320,
              "a field of ServiceSpec was added or removed: compare it in "
              "ChangedLaunchSettings if it is a launch setting (else say in "
              "launch_settings.h that it applies as the service runs), then update this size");
bool Same(const sandbox::Protections& a, const sandbox::Protections& b) {
  auto fields = [](const sandbox::Protections& p) {
    return std::tie(p.private_users, p.protect_system, p.private_pids, p.private_ipc,
                    p.protect_hostname, p.private_network, p.no_new_privileges,
                    p.drop_capabilities, p.system_call_filter, p.landlock,
                    p.restrict_address_families);
  };
  return fields(a) == fields(b);
}

bool Same(const sandbox::ResourceLimits& a, const sandbox::ResourceLimits& b) {
  auto fields = [](const sandbox::ResourceLimits& l) {
    return std::tie(l.open_files, l.address_space, l.processes, l.cpu_seconds, l.memory_max,
                    l.pids_max, l.cgroup_parent);
  };
  return fields(a) == fields(b);
}

bool Same(const CapabilitySpec& a, const CapabilitySpec& b) {
  auto fields = [](const CapabilitySpec& c) {
    return std::tie(c.name, c.kind, c.path, c.access, c.create, c.truncate, c.follow_symlinks,
                    c.mode, c.size, c.shared);
  };
  return fields(a) == fields(b);
}

bool Same(const std::vector<CapabilitySpec>& a, const std::vector<CapabilitySpec>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!Same(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

std::vector<CapabilitySpec> StartGrants(const Policy& policy, const ServiceSpec& spec) {
  std::vector<CapabilitySpec> grants;
  grants.reserve(spec.grants.size());
  for (size_t index : spec.grants) grants.push_back(policy.capabilities()[index]);
  return grants;
}

std::vector<std::string> ChangedLaunchSettings(const LaunchSettings& before,
                                               const LaunchSettings& after,
                                               InstancePhase phase) {
  const ServiceSpec& a = before.spec;
  const ServiceSpec& b = after.spec;
  std::vector<std::string> changed;
  auto note = [&](bool differs, const char* name) {
    if (differs) changed.push_back(name);
  };
  note(a.command != b.command, "command");
  note(a.environment != b.environment, "environment");
  note(before.uid != after.uid, "user");
  note(before.gid != after.gid, "group");
  note(!Same(a.protections, b.protections), "sandbox");
  note(!Same(a.limits, b.limits), "limits");
  note(!Same(before.grants, after.grants), "grants");
  note(phase == InstancePhase::kStarting && a.start_timeout_ms != b.start_timeout_ms,
       "startTimeoutMs");
  return changed;
}

}  // namespace capbroker::service
