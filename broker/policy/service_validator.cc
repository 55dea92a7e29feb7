#include "broker/policy/service_validator.h"

#include <optional>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/excerpt.h"
#include "broker/policy/spelling.h"
#include "broker/sandbox/settings.h"
#include "capnp/schema.h"

namespace capbroker {
namespace {

using sandbox::AddressFamily;
using sandbox::Requirement;

bool IsVariableName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

// Why `value`, an argument or environment entry, cannot be passed to
// execve (which ends each at its first NUL byte), or is longer than the
// broker takes; nullopt when it can.
std::optional<std::string> StringProblem(absl::string_view value) {
  if (value.find('\0') != absl::string_view::npos) return "contains a NUL byte";
  if (value.size() > kMaxArgumentLength) {
    return absl::StrCat("is ", value.size(), " bytes long; the limit is ", kMaxArgumentLength);
  }
  return std::nullopt;
}

class ServiceValidator {
 public:
  ServiceValidator(Checks& checks, const CapabilityNames& capabilities,
                   PrincipalNames& names, const BrokerContext& broker)
      : checks_(checks), capabilities_(capabilities), names_(names), broker_(broker) {}

  std::vector<ServiceSpec> Run(capnp::List<policy::Service>::Reader list) {
    std::vector<ServiceSpec> specs;
    specs.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) specs.push_back(Service(list[i], i));
    // `connect` may name services defined further down: checked last.
    std::vector<std::string> all_names;  // for "did you mean"
    for (const auto& [name, where] : names_.where) all_names.push_back(name);
    for (size_t i = 0; i < list.size(); ++i) {
      Connect(list[i].getConnect(), i, all_names, specs[i]);
    }
    return specs;
  }

 private:
  std::string Path(size_t index) { return absl::StrCat("services[", index, "]"); }

  ServiceSpec Service(policy::Service::Reader service, size_t index) {
    ServiceSpec spec;
    spec.name = ToString(service.getName());
    std::string path = Path(index);
    std::string label = Checks::Label("service", "services", index, spec.name);
    // Principals and services share one name space: a connect list or an
    // audit line names either without ambiguity.
    checks_.CheckName("service", path, spec.name, names_.where);
    Command(service.getCommand(), path + ".command", label, spec);
    Environment(service.getEnvironment(), path + ".environment", label, spec);
    spec.grants = checks_.Grants(service.getGrants(), path + ".grants", label,
                                 capabilities_);
    Lifecycle(service, path, label, spec);
    // Never root: refused just below.
    spec.user = checks_.Id(service.getUser(), "user", path, label, "use the default",
                           /*root_allowed=*/false);
    spec.group = checks_.Id(service.getGroup(), "group", path, label, "use the default",
                            /*root_allowed=*/false);
    if (spec.user == 0u || spec.group == 0u) {
      checks_.Error(absl::StrCat(path, spec.user == 0u ? ".user" : ".group"),
                    absl::StrCat(label, ": a service never runs as root (uid or gid 0)"));
    }
    if (broker_.ids.has_value() && broker_.ids->uid != 0) {
      OwnId(spec.user, broker_.ids->uid, path, label, "user", "uid");
      OwnId(spec.group, broker_.ids->gid, path, label, "group", "gid");
    }
    Limits(service.getLimits(), path + ".limits", label, spec);
    Sandbox(service.getSandbox(), path + ".sandbox", label, spec);
    spec.accepts_fds = service.getAcceptsFds();
    return spec;
  }

  // A service's `field` (user or group, an `id` uid or gid) given as
  // `value`, for a broker that is not root and whose own is `own`: the
  // kernel lets it map only its own ids into the service's user namespace
  // (see BrokerContext::ids), so another is refused now, not at each start.
  void OwnId(std::optional<uint32_t> value, uint32_t own, const std::string& path,
             const std::string& label, absl::string_view field, absl::string_view id) {
    if (!value.has_value() || *value == own || *value == 0) return;  // 0: refused above
    checks_.Error(absl::StrCat(path, ".", field),
                  absl::StrCat(label, ": ", field, " ", *value, " is not this broker's ", id,
                               ", ", own, ", and a broker that is not root can run services "
                               "only as its own uid and gid (every start would fail): leave ",
                               field, " out (the service then runs as ", id, " ", own,
                               "), or run the broker as root"));
  }

  void Command(capnp::List<capnp::Text>::Reader command, const std::string& path,
               const std::string& label, ServiceSpec& spec) {
    if (command.size() == 0) {
      checks_.Error(path, absl::StrCat(label, " has no command; give command = "
                                              "[\"/path/to/program\", \"arg\", ...]"));
      return;
    }
    for (size_t i = 0; i < command.size(); ++i) {
      std::string arg = ToString(command[i]);
      std::string arg_path = absl::StrCat(path, "[", i, "]");
      std::optional<std::string> problem = StringProblem(arg);
      if (problem.has_value()) {
        checks_.Error(arg_path, absl::StrCat(label, ": argument ", i, " ", *problem));
      }
      spec.command.push_back(std::move(arg));
    }
    checks_.CheckPath(label, path + "[0]", spec.command[0], "command[0] (the program)");
  }

  void Environment(capnp::List<capnp::Text>::Reader environment, const std::string& path,
                   const std::string& label, ServiceSpec& spec) {
    absl::flat_hash_set<std::string> seen;
    for (size_t i = 0; i < environment.size(); ++i) {
      std::string entry = ToString(environment[i]);
      std::string entry_path = absl::StrCat(path, "[", i, "]");
      std::optional<std::string> problem = StringProblem(entry);
      if (problem.has_value()) {
        checks_.Error(entry_path,
                      absl::StrCat(label, ": environment entry ", i, " ", *problem));
        continue;
      }
      size_t eq = entry.find('=');
      std::string name = entry.substr(0, eq);
      if (eq == std::string::npos || !IsVariableName(name)) {
        checks_.Error(entry_path, absl::StrCat(label, ": environment entry ",
                                               Quoted(entry), " is not NAME=VALUE"));
        continue;
      }
      for (absl::string_view reserved : sandbox::kReservedVariables) {
        if (name == reserved) {
          checks_.Error(entry_path, absl::StrCat(label, ": ", name,
                                                 " is set by the broker; leave it out"));
        }
      }
      if (!seen.insert(name).second) {
        checks_.Error(entry_path,
                      absl::StrCat(label, ": ", name, " is set twice; set it once"));
      }
      spec.environment.push_back(std::move(entry));
    }
  }

  void Lifecycle(policy::Service::Reader service, const std::string& path,
                 const std::string& label, ServiceSpec& spec) {
    switch (service.getActivation()) {
      case policy::Activation::ON_DEMAND: spec.activation = Activation::kOnDemand; break;
      case policy::Activation::AT_START: spec.activation = Activation::kAtStart; break;
      default: Unknown(path + ".activation", label, "activation");
    }
    switch (service.getRestart()) {
      case policy::Restart::ON_FAILURE: spec.restart = RestartMode::kOnFailure; break;
      case policy::Restart::NEVER: spec.restart = RestartMode::kNever; break;
      case policy::Restart::ALWAYS: spec.restart = RestartMode::kAlways; break;
      default: Unknown(path + ".restart", label, "restart");
    }
    switch (service.getReadiness()) {
      case policy::Readiness::NOTIFY: spec.readiness = Readiness::kNotify; break;
      case policy::Readiness::EXEC: spec.readiness = Readiness::kExec; break;
      default: Unknown(path + ".readiness", label, "readiness");
    }
    spec.restart_limit = service.getRestartLimit();
    spec.restart_delay_ms = service.getRestartDelayMs();
    spec.start_timeout_ms = service.getStartTimeoutMs();
    Range(path + ".restartLimit", label, "restartLimit", spec.restart_limit, 0,
          kMaxRestartLimit);
    Range(path + ".restartDelayMs", label, "restartDelayMs", spec.restart_delay_ms, 1,
          kMaxRestartDelayMs,
          absl::StrCat(" (", kMaxRestartDelayMs / 1000, " s, the longest the broker waits "
                       "before a restart: the delay doubles per restart in a row up to "
                       "that)"));
    Range(path + ".startTimeoutMs", label, "startTimeoutMs", spec.start_timeout_ms, 1,
          kMaxStartTimeoutMs);
  }

  // `why`, if given, follows the range in the message (" (...)").
  void Range(const std::string& path, const std::string& label, absl::string_view field,
             uint32_t value, uint32_t low, uint32_t high, absl::string_view why = "") {
    if (value < low || value > high) {
      checks_.Error(path, absl::StrCat(label, ": ", field, " ", value, " is out of range: ",
                                       low, " to ", high, why));
    }
  }

  // A value of an enum this broker does not know: a policy written for a
  // newer broker. Refused, never guessed.
  void Unknown(const std::string& path, const std::string& label, absl::string_view field) {
    checks_.Error(path, absl::StrCat(label, ": ", field, " has a value this broker "
                                            "does not know"));
  }

  void Limits(policy::ResourceLimits::Reader limits, const std::string& path,
              const std::string& label, ServiceSpec& spec) {
    spec.limits.open_files = limits.getOpenFiles();
    spec.limits.address_space = limits.getAddressSpace();
    spec.limits.processes = limits.getProcesses();
    spec.limits.cpu_seconds = limits.getCpuSeconds();
    spec.limits.memory_max = limits.getMemoryMax();
    spec.limits.pids_max = limits.getPidsMax();
    if (broker_.hard_limits.has_value()) {
      const BrokerHardLimits& hard = *broker_.hard_limits;
      HardLimit(path + ".openFiles", label, "openFiles", spec.limits.open_files,
                hard.open_files, "NOFILE", "nofile");
      HardLimit(path + ".addressSpace", label, "addressSpace", spec.limits.address_space,
                hard.address_space, "AS", "as");
      HardLimit(path + ".processes", label, "processes", spec.limits.processes,
                hard.processes, "NPROC", "nproc");
      HardLimit(path + ".cpuSeconds", label, "cpuSeconds", spec.limits.cpu_seconds,
                hard.cpu_seconds, "CPU", "cpu");
    }
    if (spec.limits.memory_max != 0) {
      CgroupLimit(path + ".memoryMax", label, "memoryMax", "memory");
    }
    if (spec.limits.pids_max != 0) CgroupLimit(path + ".pidsMax", label, "pidsMax", "pids");
  }

  // An rlimit (`field`, RLIMIT_`resource`, systemd's Limit`resource`=,
  // prlimit's --`option`) above the broker's hard limit `hard`: every start
  // would fail (BrokerHardLimits), so the policy is refused now.
  void HardLimit(const std::string& path, const std::string& label, absl::string_view field,
                 uint64_t value, uint64_t hard, absl::string_view resource,
                 absl::string_view option) {
    if (value == 0 || value <= hard) return;  // 0: the broker's own, or the default
    checks_.Error(path, absl::StrCat(label, ": ", field, " ", value, " is above the broker's "
                                     "hard RLIMIT_", resource, ", ", hard, ", which no "
                                     "service's limit can exceed (its every start would fail "
                                     "with EPERM): raise the broker's hard limit (Limit",
                                     resource, "= in its systemd unit, or prlimit --", option,
                                     ") and reload, or lower ", field));
  }

  // A limit applied in the service's cgroup (`field`, which needs the cgroup
  // controller `controller`): an error when the broker could not apply it,
  // so that no service ever runs without a limit its policy sets.
  void CgroupLimit(const std::string& path, const std::string& label,
                   absl::string_view field, absl::string_view controller) {
    if (!broker_.cgroup.has_value()) return;  // not known: capctl policy check
    const sandbox::CgroupParent& cgroup = *broker_.cgroup;
    std::string leave_out = absl::StrCat(" (or leave ", field, " out)");
    if (cgroup.path.empty()) {
      checks_.Error(path, absl::StrCat(label, ": ", field, " needs a cgroup, and this "
                                       "broker has none: start capbrokerd with --cgroup DIR, "
                                       "a delegated cgroup v2 directory",
                                       leave_out));
    } else if (!cgroup.unusable.empty()) {
      checks_.Error(path, absl::StrCat(label, ": ", field, " needs a cgroup, and the "
                                       "broker's --cgroup ", cgroup.path,
                                       " cannot be used now: ", cgroup.unusable, leave_out));
    } else if (!(controller == "memory" ? cgroup.memory : cgroup.pids)) {
      checks_.Error(path, absl::StrCat(label, ": ", field, " needs the ", controller,
                                       " controller, which the broker's --cgroup ",
                                       cgroup.path, " does not enable for its children: echo "
                                       "+", controller, " > ", cgroup.path,
                                       "/cgroup.subtree_control", leave_out));
    }
  }

  Requirement Protection(policy::Protection value, const std::string& path,
                         const std::string& label, absl::string_view field) {
    switch (value) {
      case policy::Protection::REQUIRED: return Requirement::kRequired;
      case policy::Protection::BEST_EFFORT: return Requirement::kBestEffort;
      case policy::Protection::OFF: return Requirement::kOff;
    }
    Unknown(absl::StrCat(path, ".", field), label, field);
    return Requirement::kRequired;
  }

  void Sandbox(policy::Sandbox::Reader sandbox, const std::string& path,
               const std::string& label, ServiceSpec& spec) {
    sandbox::Protections& p = spec.protections;
    p.private_users = Protection(sandbox.getPrivateUsers(), path, label, "privateUsers");
    p.protect_system = Protection(sandbox.getProtectSystem(), path, label, "protectSystem");
    p.private_pids = Protection(sandbox.getPrivatePids(), path, label, "privatePids");
    p.private_ipc = Protection(sandbox.getPrivateIpc(), path, label, "privateIpc");
    p.protect_hostname =
        Protection(sandbox.getProtectHostname(), path, label, "protectHostname");
    p.private_network =
        Protection(sandbox.getPrivateNetwork(), path, label, "privateNetwork");
    p.no_new_privileges =
        Protection(sandbox.getNoNewPrivileges(), path, label, "noNewPrivileges");
    p.drop_capabilities =
        Protection(sandbox.getDropCapabilities(), path, label, "dropCapabilities");
    p.system_call_filter =
        Protection(sandbox.getSystemCallFilter(), path, label, "systemCallFilter");
    p.landlock = Protection(sandbox.getLandlock(), path, label, "landlock");
    p.restrict_address_families.clear();
    auto families = sandbox.getRestrictAddressFamilies();
    for (size_t i = 0; i < families.size(); ++i) {
      std::string family_path = absl::StrCat(path, ".restrictAddressFamilies[", i, "]");
      AddressFamily family;
      switch (families[i]) {
        case policy::AddressFamily::UNIX: family = AddressFamily::kUnix; break;
        case policy::AddressFamily::INET: family = AddressFamily::kInet; break;
        case policy::AddressFamily::INET6: family = AddressFamily::kInet6; break;
        case policy::AddressFamily::NETLINK: family = AddressFamily::kNetlink; break;
        default:
          Unknown(family_path, label, "restrictAddressFamilies");
          continue;
      }
      // Entries kept are distinct (at most one of each family): one error
      // per repetition, at it, however long the list.
      if (absl::c_linear_search(p.restrict_address_families, family)) {
        // Named as the policy spells it (a known value: its enumerant).
        const capnp::Text::Reader spelled =
            capnp::Schema::from<policy::AddressFamily>()
                .getEnumerants()[static_cast<uint16_t>(families[i])]
                .getProto()
                .getName();
        checks_.Error(family_path, absl::StrCat(label, ": restrictAddressFamilies lists ",
                                                spelled.cStr(), " twice; list it once"));
        continue;
      }
      p.restrict_address_families.push_back(family);
    }
  }

  void Connect(capnp::List<capnp::Text>::Reader connect, size_t index,
               const std::vector<std::string>& all_names, ServiceSpec& spec) {
    std::string path = absl::StrCat(Path(index), ".connect");
    std::string label = Checks::Label("service", "services", index, spec.name);
    absl::flat_hash_set<std::string> seen;
    for (size_t i = 0; i < connect.size(); ++i) {
      std::string name = ToString(connect[i]);
      std::string entry_path = absl::StrCat(path, "[", i, "]");
      if (!names_.where.contains(name)) {
        // A suggestion costs a comparison with every name: none once
        // nobody sees it (a generated policy took minutes otherwise).
        checks_.Error(entry_path,
                      absl::StrCat(label, ": connect names ", Quoted(name),
                                   ", which is not a principal or service in this policy",
                                   checks_.full() ? "" : DidYouMean(name, all_names)));
        continue;
      }
      if (!seen.insert(name).second) {
        checks_.Error(entry_path, absl::StrCat(label, ": connect lists ", Quoted(name),
                                               " twice; list it once"));
        continue;
      }
      spec.connect.push_back(std::move(name));
    }
  }

  Checks& checks_;
  const CapabilityNames& capabilities_;
  PrincipalNames& names_;
  const BrokerContext& broker_;
};

}  // namespace

std::vector<ServiceSpec> ValidateServices(
    capnp::List<policy::Service>::Reader list, Checks& checks,
    const CapabilityNames& capabilities, PrincipalNames& principals,
    const BrokerContext& broker) {
  return ServiceValidator(checks, capabilities, principals, broker).Run(list);
}

}  // namespace capbroker
