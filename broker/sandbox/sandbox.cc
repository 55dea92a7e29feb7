// StartLaunch: the parent's side up to the child's release. See
// pending_launch.h for the rest, child.h for the child's side.
#include "broker/sandbox/sandbox.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/sandbox/cgroup.h"
#include "broker/sandbox/child.h"
#include "broker/sandbox/credentials.h"
#include "broker/sandbox/detached_dir.h"
#include "broker/sandbox/fd_layout.h"
#include "broker/sandbox/hidden_paths.h"
#include "broker/sandbox/landlock.h"
#include "broker/sandbox/minimal_root.h"
#include "broker/sandbox/namespaces.h"
#include "broker/sandbox/outcome.h"
#include "broker/sandbox/pending_launch.h"
#include "broker/sandbox/process_defaults.h"
#include "broker/sandbox/protection.h"
#include "broker/sandbox/seccomp_filter.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

// HOST_NAME_MAX; also keeps cgroup names short.
constexpr size_t kMaxNameLength = 64;

bool IsSafeName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

int SocketFamily(AddressFamily family) {
  switch (family) {
    case AddressFamily::kUnix: return AF_UNIX;
    case AddressFamily::kInet: return AF_INET;
    case AddressFamily::kInet6: return AF_INET6;
    case AddressFamily::kNetlink: return AF_NETLINK;
  }
  return -1;
}

// The broker's hard limit of `resource` (named `name`), above which the
// child can raise nothing: it sets soft and hard alike.
absl::StatusOr<rlim_t> BrokersHardLimit(int resource, const char* name) {
  rlimit broker;
  if (getrlimit(static_cast<__rlimit_resource>(resource), &broker) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getrlimit(", name, ")"));
  }
  return broker.rlim_max;
}

// `value`, or the broker's hard limit of `resource` when that is lower.
absl::StatusOr<uint64_t> WithinBrokersHardLimit(int resource, const char* name, uint64_t value) {
  CB_ASSIGN_OR_RETURN(rlim_t hard, BrokersHardLimit(resource, name));
  return hard == RLIM_INFINITY ? value : std::min<uint64_t>(value, hard);
}

absl::Status Validate(const SandboxSpec& spec) {
  if (!IsSafeName(spec.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "service name '", spec.name, "' must be 1 to 64 of [A-Za-z0-9_.-]"));
  }
  if (spec.argv.empty() || !IsNormalAbsolutePath(spec.argv[0])) {
    return absl::InvalidArgumentError(
        "argv[0] must be the program's absolute path, without '.' or '..'");
  }
  for (const std::string& entry : spec.env) {
    if (entry.find('=') == std::string::npos || entry[0] == '=') {
      return absl::InvalidArgumentError(absl::StrCat("env entry '", entry, "' is not KEY=VALUE"));
    }
  }
  std::string reserved = ReservedVariableIn(spec.env);
  if (!reserved.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(reserved, " is set by the sandbox"));
  }
  for (const PassedFd& passed : spec.fds) {
    if (!IsSafeName(passed.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("fd name '", passed.name, "' must be 1 to 64 of [A-Za-z0-9_.-]"));
    }
    if (passed.fd < 0 || fcntl(passed.fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("fd '", passed.name, "' (", passed.fd, ") is not open"));
    }
  }
  if (spec.broker_fd != -1 && (spec.broker_fd < 0 || fcntl(spec.broker_fd, F_GETFD) < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("broker_fd ", spec.broker_fd, " is not open"));
  }
  // Here, not only in the child (HidePaths), where a malformed one would
  // fail protectSystem rather than the spec, and, best effort, start the
  // service in the host's tree with nothing hidden.
  for (const std::string& path : spec.hidden_paths) CB_RETURN_IF_ERROR(CheckHiddenPath(path));
  for (AddressFamily family : spec.protections.restrict_address_families) {
    if (SocketFamily(family) < 0) return absl::InvalidArgumentError("unknown address family");
  }
  // Without CAP_SETUID in the initial namespace, the kernel lets a process
  // map only its own uid and gid into a user namespace.
  if (geteuid() != 0 && (spec.uid != geteuid() || spec.gid != getegid())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "uid ", spec.uid, " gid ", spec.gid, ": a broker that is not root (uid ", geteuid(),
        ") can run services only as its own uid and gid"));
  }
  const Protections& p = spec.protections;
  if (p.no_new_privileges == Requirement::kOff &&
      (p.system_call_filter != Requirement::kOff || p.landlock != Requirement::kOff)) {
    return absl::InvalidArgumentError(
        "systemCallFilter and landlock need noNewPrivileges: the kernel lets a process "
        "without CAP_SYS_ADMIN install them only with no_new_privs set");
  }
  return absl::OkStatus();
}

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// The service's own cgroup, when its limits need one (nullopt when they do
// not). A limit the policy asks for is applied or the service does not
// start: without a cgroup parent, or when the cgroup cannot be made, the
// launch fails, and the message names the limits as the policy does.
absl::StatusOr<std::optional<ServiceCgroup>> MakeCgroup(const SandboxSpec& spec) {
  const ResourceLimits& limits = spec.limits;
  std::string names = CgroupLimitNames(limits);
  if (names.empty()) return std::nullopt;
  if (limits.cgroup_parent.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        names, " need", limits.memory_max != 0 && limits.pids_max != 0 ? "" : "s",
        " a cgroup, and the broker has none: start capbrokerd with --cgroup DIR, a "
        "delegated cgroup v2 directory"));
  }
  std::string leaf = absl::StrCat("capbroker-", spec.name, "-", getpid(), "-", MonotonicNanos());
  absl::StatusOr<ServiceCgroup> cgroup = ServiceCgroup::Create(
      limits.cgroup_parent, leaf, limits.memory_max, limits.pids_max);
  if (!cgroup.ok()) {
    return absl::Status(cgroup.status().code(),
                        absl::StrCat(names, ": cannot make the service's cgroup in --cgroup ",
                                     limits.cgroup_parent, ": ", cgroup.status().message()));
  }
  return std::optional<ServiceCgroup>(std::move(*cgroup));
}

// Creates the child in the namespaces the spec asks for. When clone3 fails
// for a namespace (NamespaceRefused), probes each namespace to name the one
// that is unavailable, drops it if it is best-effort (or fails the launch if
// it is required) and tries again. Other failures, the cgroup's included
// (CLONE_INTO_CGROUP refused), are returned as they are: the service never
// runs outside the cgroup of its limits. Returns twice, like fork: in the
// child too (pid 0), which must do nothing here but return.
absl::StatusOr<CloneResult> CreateChild(Outcome& outcome,
                                        const std::optional<ServiceCgroup>& cgroup,
                                        uint64_t* namespaces) {
  uint64_t flags = 0;
  for (const NamespaceProtection& ns : kNamespaces) {
    if (outcome.wanted(ns.protection)) flags |= ns.flag;
  }
  *namespaces = flags;
  const int cgroup_fd = cgroup ? cgroup->fd() : -1;
  absl::StatusOr<CloneResult> child = CloneProcess(flags, cgroup_fd);
  if (!child.ok() && NamespaceRefused(child.status())) {
    uint64_t with = 0;
    for (const NamespaceProtection& ns : kNamespaces) {
      if (!(flags & ns.flag)) continue;
      absl::Status probe = ProbeNamespace(ns.flag, with);
      if (probe.ok()) {
        if (ns.flag == CLONE_NEWUSER) with = CLONE_NEWUSER;
        continue;
      }
      // A shortage meanwhile is no verdict on the namespace.
      if (!NamespaceRefused(probe)) return probe;
      CB_RETURN_IF_ERROR(outcome.Unavailable(
          ns.protection,
          absl::StrCat(NamespaceDescription(ns.flag), " could not be created: ", probe.message())));
      flags &= ~ns.flag;
    }
    *namespaces = flags;
    child = CloneProcess(flags, cgroup_fd);
  }
  return child;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

absl::StatusOr<Pipe> MakePipe(const char* what) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, absl::StrCat("pipe2(", what, ")"));
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Lets the child go: its id maps and the scheduling state it must not
// inherit (process_defaults.h), then the byte it waits for on the sync
// pipe. Neither waits on the child.
absl::Status Release(const LaunchParts& parts, const SandboxSpec& spec, bool deny_setgroups) {
  if (parts.namespaces & CLONE_NEWUSER) {
    CB_RETURN_IF_ERROR(WriteIdMaps(parts.child.pid, spec.uid, spec.gid, deny_setgroups));
  }
  CB_RETURN_IF_ERROR(ResetInheritedScheduling(parts.child.pid));
  const char go = 1;
  if (RetryEintr([&] { return write(parts.sync.get(), &go, 1); }) != 1) {
    return ErrnoStatus(errno, "write(sync pipe)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PendingLaunch>> StartLaunch(const SandboxSpec& spec) {
  CB_RETURN_IF_ERROR(Validate(spec));
  const Protections& protections = spec.protections;
  Outcome outcome(protections);

  // What can be known before the clone is settled here, where an error is
  // simple to report and costs no process.
  int landlock_abi = 0;
  if (outcome.wanted(Protection::kLandlock)) {
    absl::StatusOr<int> abi = landlock::Abi();
    if (abi.ok()) {
      landlock_abi = *abi;
    } else {
      CB_RETURN_IF_ERROR(outcome.Unavailable(Protection::kLandlock, abi.status().message()));
    }
  }
  std::vector<int> families;
  for (AddressFamily family : protections.restrict_address_families) {
    families.push_back(SocketFamily(family));
  }
  std::optional<SeccompProgram> seccomp;
  if (outcome.wanted(Protection::kSystemCallFilter)) {
    absl::StatusOr<SeccompProgram> program = BuildSeccompFilter(families);
    if (program.ok()) {
      seccomp = std::move(*program);
    } else {
      CB_RETURN_IF_ERROR(outcome.Unavailable(
          Protection::kSystemCallFilter,
          absl::StrCat("the filter could not be built: ", program.status().message())));
      outcome.MarkMissing(static_cast<int>(Protection::kRestrictAddressFamilies),
                          MissingEntry(Protection::kRestrictAddressFamilies,
                                       "enforced by systemCallFilter, which is missing"));
    }
  } else {
    // Nothing else limits socket() (Landlock's TCP rule aside): said as for
    // a missing filter, so that turning the filter off is seen to drop it.
    outcome.MarkMissing(static_cast<int>(Protection::kRestrictAddressFamilies),
                        MissingEntry(Protection::kRestrictAddressFamilies,
                                     "enforced by systemCallFilter, which is off"));
  }
  CB_ASSIGN_OR_RETURN(Pipe sync, MakePipe("sync"));
  CB_ASSIGN_OR_RETURN(Pipe report, MakePipe("report"));
  CB_ASSIGN_OR_RETURN(Pipe output, MakePipe("output"));
  CB_RETURN_IF_ERROR(SetNonBlocking(report.read.get(), true));
  CB_RETURN_IF_ERROR(SetNonBlocking(output.read.get(), true));
  CB_ASSIGN_OR_RETURN(UniqueFd dev_null, TakeFd(open("/dev/null", O_RDONLY | O_CLOEXEC),
                                                "open(/dev/null)"));

  ChildPlan plan;
  plan.hostname = spec.name;
  plan.argv = spec.argv;
  plan.env = spec.env;
  plan.hidden_paths = spec.hidden_paths;
  plan.protect_system = outcome.requirement(Protection::kProtectSystem);
  plan.protect_hostname = outcome.requirement(Protection::kProtectHostname);
  plan.drop_capabilities = outcome.requirement(Protection::kDropCapabilities);
  plan.no_new_privileges = outcome.requirement(Protection::kNoNewPrivileges);
  plan.system_call_filter = outcome.requirement(Protection::kSystemCallFilter);
  plan.landlock = outcome.requirement(Protection::kLandlock);
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  // Only root may drop its supplementary groups, and only where its user
  // namespace allows setgroups; elsewhere the service keeps the broker's
  // own, which the kernel then forbids it to drop in turn.
  const bool root = geteuid() == 0;
  plan.clear_groups = root && SetgroupsAllowed();
  if (!plan.clear_groups) {
    CB_ASSIGN_OR_RETURN(std::vector<gid_t> groups, SupplementaryGroups());
    std::string kept = KeptGroupsEntry(
        groups, spec.gid, root ? GroupsKept::kSetgroupsDenied : GroupsKept::kNotRoot);
    if (!kept.empty()) outcome.MarkMissing(-1, std::move(kept));
  }
  plan.rlimits = {
      {RLIMIT_AS, "RLIMIT_AS", spec.limits.address_space},
      {RLIMIT_NPROC, "RLIMIT_NPROC", spec.limits.processes},
      {RLIMIT_CPU, "RLIMIT_CPU", spec.limits.cpu_seconds},
  };
  plan.open_files = spec.limits.open_files;
  if (plan.open_files == 0) {
    CB_ASSIGN_OR_RETURN(plan.open_files,
                        WithinBrokersHardLimit(RLIMIT_NOFILE, "RLIMIT_NOFILE", kDefaultOpenFiles));
  }
  CB_ASSIGN_OR_RETURN(rlim_t broker_processes, BrokersHardLimit(RLIMIT_NPROC, "RLIMIT_NPROC"));
  const uint64_t default_processes = DefaultProcesses(spec.limits, broker_processes);
  plan.seccomp = seccomp ? &*seccomp : nullptr;
  plan.landlock_abi = landlock_abi;
  plan.landlock_deny_tcp = true;
  for (AddressFamily family : protections.restrict_address_families) {
    if (family == AddressFamily::kInet || family == AddressFamily::kInet6) {
      plan.landlock_deny_tcp = false;
    }
  }
  // Directory grants are cloned here, where the broker's own fd leads to
  // them without a lookup by path (detached_dir.h); the clones are held
  // until the child has its copies. One the broker cannot clone (EPERM: no
  // CAP_SYS_ADMIN over its mount namespace; or any other error) is left to
  // the child, which detaches it by path, as it did before.
  std::vector<UniqueFd> trees;
  for (const PassedFd& passed : spec.fds) {
    ChildGrant grant{passed.fd, passed.directory, passed.writable, /*tree_fd=*/-1,
                     /*clone_error=*/{}};
    if (outcome.wanted(Protection::kProtectSystem)) {
      absl::StatusOr<std::optional<UniqueFd>> tree =
          CloneDirectoryTree(passed.fd, passed.writable);
      if (tree.ok() && tree->has_value()) {
        grant.tree_fd = (*tree)->get();
        trees.push_back(std::move(**tree));
      } else if (!tree.ok() && geteuid() == 0) {
        grant.clone_error = std::string(tree.status().message());
      }
    }
    plan.grants.push_back(grant);
    plan.grant_names.push_back(passed.name);
  }
  plan.broker_fd = spec.broker_fd;
  plan.stdin_fd = dev_null.get();
  plan.output_fd = output.write.get();
  plan.sync_fd = sync.read.get();
  plan.report_fd = report.write.get();

  // Made last, when nothing but the clone can fail: a cgroup is a directory
  // on the host, and a launch that fails leaves none (ServiceCgroup removes
  // it unless handed over).
  CB_ASSIGN_OR_RETURN(std::optional<ServiceCgroup> cgroup, MakeCgroup(spec));
  uint64_t namespaces = 0;
  absl::StatusOr<CloneResult> cloned = CreateChild(outcome, cgroup, &namespaces);
  if (!cloned.ok()) {
    if (!cgroup) return cloned.status();
    std::string path = cgroup->path();
    cgroup->Remove().IgnoreError();
    // Perhaps the cgroup's fault (CLONE_INTO_CGROUP): say so, with the
    // limits as the policy names them.
    return absl::Status(cloned.status().code(),
                        absl::StrCat(cloned.status().message(), " (creating the service in ",
                                     path, " for ", CgroupLimitNames(spec.limits), ")"));
  }
  // The default process limit (none where the policy sets processes or
  // pidsMax) only where the kernel counts the service's processes alone:
  // in a user namespace of its own (kDefaultProcesses).
  // Settled in both processes: the child applies it, the parent says when
  // it does not.
  if (default_processes != 0 && (namespaces & CLONE_NEWUSER)) {
    plan.rlimits.push_back({RLIMIT_NPROC, "RLIMIT_NPROC", default_processes});
  } else if (default_processes != 0) {
    outcome.MarkMissing(-1, NoDefaultProcessesEntry(default_processes, spec.uid));
  }
  if (cloned->pid == 0) {
    plan.namespaces = namespaces;
    RunChild(plan);
  }
  LaunchParts parts;
  parts.child = std::move(*cloned);
  parts.namespaces = namespaces;
  parts.landlock_abi = landlock_abi;
  parts.landlock_deny_tcp = plan.landlock_deny_tcp;
  parts.cgroup = std::move(cgroup);
  parts.sync = std::move(sync.write);
  parts.report = std::move(report.read);
  parts.output = std::move(output.read);
  // The child's ends: the parent must not hold the report pipe's write end,
  // or it would never see end of file.
  sync.read.reset();
  report.write.reset();
  output.write.reset();
  dev_null.reset();
  trees.clear();
  // Its name, opened after the child's ends are closed, which leaves room
  // below the fd limit: a broker that could make the pipes can open it. A
  // child not let go never runs its program: a failure here fails the
  // launch, its child killed and reaped when abandoned, its grants not
  // delivered.
  absl::StatusOr<UniqueFd> name = OpenName(parts.child.pid);
  if (name.ok()) {
    parts.name = std::move(*name);
    parts.failure = Release(parts, spec, /*deny_setgroups=*/!plan.clear_groups);
  } else {
    parts.failure = name.status();
  }
  parts.released = parts.failure.ok();
  return std::unique_ptr<PendingLaunch>(
      std::make_unique<ChildLaunch>(std::move(outcome), std::move(parts)));
}

}  // namespace capbroker::sandbox
