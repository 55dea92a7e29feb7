#include "broker/sandbox/child.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>

#include "absl/strings/str_cat.h"
#include "broker/sandbox/credentials.h"
#include "broker/sandbox/detached_dir.h"
#include "broker/sandbox/fd_layout.h"
#include "broker/sandbox/landlock.h"
#include "broker/sandbox/minimal_root.h"
#include "broker/sandbox/namespaces.h"
#include "broker/sandbox/process_defaults.h"
#include "broker/sandbox/protection.h"
#include "broker/sandbox/report_pipe.h"
#include "broker/sandbox/signals.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {
namespace {

// Devices of the minimal /dev and what Landlock lets the service do with
// them. Opening /dev/null with O_TRUNC (a shell's "> /dev/null") needs the
// truncate right.
struct DeviceRights {
  const char* path;
  uint64_t rights;
};
constexpr DeviceRights kDeviceRights[] = {
    {"/dev/null", landlock::kReadFile | landlock::kWriteFile | landlock::kTruncate},
    {"/dev/zero", landlock::kReadFile | landlock::kWriteFile | landlock::kTruncate},
    {"/dev/full", landlock::kReadFile | landlock::kWriteFile | landlock::kTruncate},
    {"/dev/random", landlock::kReadFile},
    {"/dev/urandom", landlock::kReadFile},
    {"/dev/tty", landlock::kReadFile | landlock::kWriteFile},
};

class Child {
 public:
  explicit Child(const ChildPlan& plan) : plan_(plan), reporter_(plan.report_fd) {}

  [[noreturn]] void Run();

 private:
  // Settles the outcome of a protection's step: true when in force. A
  // required protection that failed ends the child here.
  bool Settle(Protection protection, Requirement requirement,
              const absl::Status& status, absl::string_view what);
  // Ends the child with `message` for a protection's failed step,
  // `status`: a shortage keeps its code, so that the caller may try again
  // later; anything else is kFailedPrecondition, the kernel refusing.
  [[noreturn]] void FailProtection(const absl::Status& status, std::string message);
  // Ends the child with `status` when it is an error (a step that is no
  // protection of its own: ids, fds, execve).
  void Must(const absl::Status& status) {
    if (!status.ok()) reporter_.Fail(status);
  }

  // Opens the program and finds its real path (program_path_), and keeps
  // it open in program_ when that lies outside the system directories.
  absl::Status OpenProgram();
  // Replaces each directory fd of grant_fds_ with one confined to that
  // directory (detached_dir.h).
  absl::Status DetachGrants();
  absl::Status BuildRoot(bool mount_proc);
  // `own_proc`: /proc is the service's own (its pid namespace's).
  absl::Status ApplyLandlock(bool root_in_force, bool own_proc);

  const ChildPlan& plan_;
  ChildReporter reporter_;
  std::vector<int> grant_fds_;  // as the service will get them
  std::vector<UniqueFd> detached_;
  // The program's real path, every link resolved: what the minimal root
  // holds it at and what execve runs (argv[0] stays as the spec gives it).
  std::string program_path_;
  // The program when its real path lies outside the system directories
  // (O_PATH): bound into the minimal root and given its own Landlock rule.
  UniqueFd program_;
};

bool Child::Settle(Protection protection, Requirement requirement,
                   const absl::Status& status, absl::string_view what) {
  if (status.ok()) return true;
  std::string reason = absl::StrCat(what, ": ", status.message());
  if (requirement == Requirement::kRequired) {
    FailProtection(status, RequiredButMessage(protection, reason));
  }
  reporter_.Missing(static_cast<int>(protection), MissingEntry(protection, reason));
  return false;
}

void Child::FailProtection(const absl::Status& status, std::string message) {
  // A shortage (EMFILE, ENFILE, ENOMEM: kResourceExhausted; EAGAIN:
  // kUnavailable) keeps its code, so that the caller may try again later;
  // anything else is the kernel refusing the protection. ENOSPC, also
  // kResourceExhausted, can come here only from a mount table at
  // fs.mount-max: retried too, within the caller's restart limit.
  bool shortage = status.code() == absl::StatusCode::kResourceExhausted ||
                  status.code() == absl::StatusCode::kUnavailable;
  reporter_.Fail(absl::Status(shortage ? status.code() : absl::StatusCode::kFailedPrecondition,
                              std::move(message)));
}

// The path of `fd` (borrowed) as this process sees it, for messages.
std::string PathOf(int fd) {
  absl::StatusOr<std::string> path = FdPath(fd);
  return path.ok() ? *path : absl::StrCat("(fd ", fd, ")");
}

absl::Status Child::OpenProgram() {
  const std::string& named = plan_.argv[0];
  CB_ASSIGN_OR_RETURN(UniqueFd fd,
                      TakeFd(open(named.c_str(), O_PATH | O_CLOEXEC), absl::StrCat("program ", named)));
  CB_ASSIGN_OR_RETURN(program_path_, FdPath(fd.get()));
  if (!IsNormalAbsolutePath(program_path_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("program ", named, " is ", program_path_,
                     ", not an absolute path of this mount namespace: name the program by "
                     "its real path"));
  }
  // Judged by where the file is, not by the name's text: a link in
  // /usr/local/bin to /opt/app/x would dangle in the minimal root, which
  // holds /usr but not /opt.
  if (!IsInSystemDirectory(program_path_)) program_ = std::move(fd);
  return absl::OkStatus();
}

absl::Status Child::DetachGrants() {
  std::vector<int> fds = grant_fds_;
  std::vector<UniqueFd> detached;
  for (size_t i = 0; i < plan_.grants.size(); ++i) {
    const ChildGrant& grant = plan_.grants[i];
    absl::StatusOr<UniqueFd> fd;
    if (grant.tree_fd >= 0) {
      fd = OpenDetachedTree(grant.tree_fd);
    } else {
      struct stat st;
      if (fstat(fds[i], &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(fd=", fds[i], ")"));
      // Any directory, even one not announced as such: ".." works on it
      // all the same.
      if (!S_ISDIR(st.st_mode)) continue;
      fd = DetachDirectory(fds[i], grant.writable);
    }
    if (!fd.ok()) {
      // This process has its capabilities in the service's user namespace,
      // which maps only the service's ids: CAP_DAC_OVERRIDE there covers
      // only files of those ids, and the permission bits of every other
      // file apply to it as to anyone.
      std::string hint;
      if (absl::IsPermissionDenied(fd.status())) {
        if (grant.tree_fd >= 0) {
          // Owned by root is not enough: a root-owned directory the
          // service's uid cannot read may pass this setup, and the service
          // is then refused its own grant.
          hint = "; the sandbox's setup has CAP_DAC_OVERRIDE only over the service's own "
                 "files: make the directory readable and searchable by the service's uid: "
                 "o+rx, or owned by its user (u+rx) or its group (g+rx)";
        } else {
          hint = absl::StrCat(
              "; the sandbox's setup finds it again by its path and has CAP_DAC_OVERRIDE "
              "only over the service's own files: make each directory on the path "
              "searchable by others (o+x)",
              grant.clone_error.empty()
                  ? ", or run capbrokerd as root, which needs no path"
                  : absl::StrCat(" (the broker, as root, could not clone it itself: ",
                                 grant.clone_error, ")"));
        }
      }
      return absl::Status(fd.status().code(),
                          absl::StrCat("grant '", plan_.grant_names[i], "': directory ",
                                       PathOf(fds[i]), " cannot be given to the service: ",
                                       fd.status().message(), hint));
    }
    fds[i] = fd->get();
    detached.push_back(*std::move(fd));
  }
  grant_fds_ = std::move(fds);
  detached_ = std::move(detached);
  return absl::OkStatus();
}

absl::Status Child::BuildRoot(bool mount_proc) {
  MinimalRootSpec spec;
  spec.program = program_path_;
  spec.program_fd = program_.get();
  spec.mount_proc = mount_proc;
  spec.hidden_paths = plan_.hidden_paths;
  if (plan_.namespaces & CLONE_NEWUSER) {
    CB_RETURN_IF_ERROR(SwitchFsIds(plan_.uid, plan_.gid));
    spec.service_fs_ids = true;
  }
  return EnterMinimalRoot(spec);
}

absl::Status Child::ApplyLandlock(bool root_in_force, bool own_proc) {
  CB_ASSIGN_OR_RETURN(landlock::Ruleset ruleset,
                      landlock::Ruleset::Create(plan_.landlock_abi, plan_.landlock_deny_tcp));
  for (const std::string& dir : SystemDirectoriesPresent()) {
    CB_RETURN_IF_ERROR(ruleset.AllowPath(dir.c_str(), landlock::kReadExecute));
  }
  CB_RETURN_IF_ERROR(ruleset.AllowPath("/etc", landlock::kRead));
  if (program_.valid()) CB_RETURN_IF_ERROR(ruleset.AllowFd(program_.get(), landlock::kReadFile | landlock::kExecute));
  for (const DeviceRights& device : kDeviceRights) {
    // The minimal root has only the devices the host has.
    if (access(device.path, F_OK) != 0) continue;
    CB_RETURN_IF_ERROR(ruleset.AllowPath(device.path, device.rights));
  }
  // /proc only when it is the service's own: its pid namespace's
  // processes. The host's /proc (no mount namespace, or no pid namespace)
  // would show every host process and its command line, the host's mount
  // table and unix sockets: there the service gets no rule, so none of it.
  // Not even its own /proc/PID: a Landlock rule sits on an inode, and
  // procfs makes a new inode for /proc/PID whenever the kernel has dropped
  // the cached one (memory reclaim), so such a rule would stop working at
  // some moment hours into a run; reads refused from the start are easier
  // to find. With the minimal root and no pid namespace there is no /proc.
  if (own_proc) CB_RETURN_IF_ERROR(ruleset.AllowPath("/proc", landlock::kRead));
  // Only in the minimal root: elsewhere these would be the host's / and /tmp.
  if (root_in_force) {
    CB_RETURN_IF_ERROR(ruleset.AllowPath("/", landlock::kReadDir));
    CB_RETURN_IF_ERROR(ruleset.AllowPath("/tmp", landlock::kReadWrite));
  }
  for (size_t i = 0; i < plan_.grants.size(); ++i) {
    if (!plan_.grants[i].directory) continue;
    CB_RETURN_IF_ERROR(
        ruleset.AllowFd(grant_fds_[i], plan_.grants[i].writable ? landlock::kReadWrite : landlock::kRead));
  }
  return ruleset.RestrictSelf();
}

void Child::Run() {
  // Named kSetupName by CloneProcess, so that Launch can tell a child that
  // died before execve from a program that ran and exited
  // (CheckReachedExecve).
  // 0, 1 and 2 stay: the broker keeps them open (on /dev/null at worst), so
  // nothing written there by mistake can land in an fd opened below.
  std::vector<int> named = {plan_.broker_fd, plan_.stdin_fd, plan_.output_fd, plan_.sync_fd,
                            plan_.report_fd};
  for (const ChildGrant& grant : plan_.grants) {
    named.push_back(grant.fd);
    if (grant.tree_fd >= 0) named.push_back(grant.tree_fd);
  }
  Must(CloseAllExcept(3, std::move(named)));
  Must(SetParentDeathSignal());
  // The parent writes one byte once the id maps are in place; end of file
  // means it gave up or died.
  char go;
  if (RetryEintr([&] { return read(plan_.sync_fd, &go, 1); }) != 1) _exit(kChildFailedExitCode);
  if (setsid() < 0) reporter_.Fail(ErrnoStatus(errno, "setsid()"));
  // A session keyring of its own too, before the ids change (credentials.h).
  Must(JoinNewSessionKeyring());
  Must(ResetSignals());
  // Its own, not the broker's (process_defaults.h); the parent has reset
  // the rest. umask(2) cannot fail.
  umask(kServiceUmask);

  // Opened before anything is mounted over the program's directory. A
  // missing program is reported as such, not as a protection's failure.
  Must(OpenProgram());
  for (const ChildGrant& grant : plan_.grants) grant_fds_.push_back(grant.fd);
  bool root_in_force = false;
  if ((plan_.namespaces & CLONE_NEWNS) && plan_.protect_system != Requirement::kOff) {
    // Directory grants first: DetachDirectory finds a directory again by
    // path in the host's tree, which pivot_root takes away.
    root_in_force = Settle(Protection::kProtectSystem, plan_.protect_system, DetachGrants(),
                           "a directory grant could not be confined to its directory");
    if (root_in_force) {
      absl::Status built = BuildRoot((plan_.namespaces & CLONE_NEWPID) != 0);
      // Best effort goes on in the host's tree, which must then be whole:
      // a root that failed half-way (the half-built one left over /tmp, or
      // a step after pivot_root) leaves no tree to go on in.
      if (LeftWithoutUsableRoot(built)) {
        FailProtection(built, MissingEntry(Protection::kProtectSystem,
                                           absl::StrCat("the minimal root could not be built, "
                                                        "and without it the service has no "
                                                        "root to run in: ",
                                                        built.message())));
      }
      root_in_force = Settle(Protection::kProtectSystem, plan_.protect_system, built,
                             "the minimal root could not be built");
    }
  }
  // The service's own /proc: the minimal root has one with a pid namespace
  // (none without). A service in its own mount and pid namespaces without
  // the minimal root (best effort, which could not be built) gets one
  // mounted over the host's; otherwise /proc is the host's.
  const bool own_pids = (plan_.namespaces & CLONE_NEWPID) != 0;
  bool own_proc = root_in_force && own_pids;
  if (!root_in_force && own_pids && (plan_.namespaces & CLONE_NEWNS) &&
      plan_.protect_system != Requirement::kOff) {
    own_proc = Settle(Protection::kProtectSystem, plan_.protect_system, MountOwnProcOverHosts(),
                      "the service's own /proc could not be mounted over the host's");
  }
  if (root_in_force && !own_pids) {
    // An entry only (no protection's tag): the minimal root is in force,
    // but short of what the README promises of it.
    reporter_.Missing(-1, MissingEntry(Protection::kProtectSystem,
                                       "no /proc without privatePids (the host's would show "
                                       "every host process): /dev/fd, /dev/stdin, /dev/stdout "
                                       "and /dev/stderr lead nowhere"));
  }
  // Not left in the broker's working directory (pivot_root did it already).
  if (!root_in_force && chdir("/") != 0) reporter_.Fail(ErrnoStatus(errno, "chdir(/)"));
  if ((plan_.namespaces & CLONE_NEWUTS) && plan_.protect_hostname != Requirement::kOff) {
    absl::Status status = absl::OkStatus();
    if (sethostname(plan_.hostname.data(), plan_.hostname.size()) != 0) {
      status = ErrnoStatus(errno, absl::StrCat("sethostname(", plan_.hostname, ")"));
    }
    Settle(Protection::kProtectHostname, plan_.protect_hostname, status,
           "the hostname could not be set");
  }
  Must(ApplyRlimits(plan_.rlimits));

  bool drop_caps = plan_.drop_capabilities != Requirement::kOff;
  if (drop_caps) {
    drop_caps = Settle(Protection::kDropCapabilities, plan_.drop_capabilities,
                       DropBoundingSet(), "the capability bounding set could not be dropped");
  }
  Must(SwitchIds(plan_.uid, plan_.gid, plan_.clear_groups));
  if (drop_caps) {
    Settle(Protection::kDropCapabilities, plan_.drop_capabilities, ClearCapabilities(),
           "the capabilities could not be cleared");
  }
  Must(SetParentDeathSignal());
  if (!CheckParentAlive(plan_.sync_fd).ok()) _exit(kChildFailedExitCode);

  if (plan_.no_new_privileges != Requirement::kOff) {
    Settle(Protection::kNoNewPrivileges, plan_.no_new_privileges, SetNoNewPrivileges(),
           "no_new_privs could not be set");
  }
  if (plan_.landlock != Requirement::kOff) {
    Settle(Protection::kLandlock, plan_.landlock, ApplyLandlock(root_in_force, own_proc),
           "the Landlock ruleset could not be applied");
  }

  std::vector<int> sources = {plan_.stdin_fd, plan_.output_fd, plan_.output_fd};
  sources.insert(sources.end(), grant_fds_.begin(), grant_fds_.end());
  int broker_target = -1;
  if (plan_.broker_fd >= 0) {
    broker_target = static_cast<int>(sources.size());
    sources.push_back(plan_.broker_fd);
  }
  absl::StatusOr<std::vector<int>> kept = ApplyFdLayout(sources, {reporter_.fd()});
  if (!kept.ok()) reporter_.Fail(kept.status());
  reporter_.set_fd((*kept)[0]);
  program_.release();  // closed by the layout too
  // The detached grants were closed by the layout; forget them unclosed.
  for (UniqueFd& fd : detached_) fd.release();
  Must(ApplyRlimits({{RLIMIT_NOFILE, "RLIMIT_NOFILE", plan_.open_files}}));

  std::vector<std::string> env =
      ServiceEnvironment(plan_.env, plan_.grant_names, broker_target, getpid());
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (const std::string& arg : plan_.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  if (plan_.seccomp != nullptr) {
    bool in_force = Settle(Protection::kSystemCallFilter, plan_.system_call_filter,
                           InstallSeccompFilter(*plan_.seccomp),
                           "the seccomp filter could not be installed");
    if (!in_force) {
      reporter_.Missing(static_cast<int>(Protection::kRestrictAddressFamilies),
                        MissingEntry(Protection::kRestrictAddressFamilies,
                                     "enforced by systemCallFilter, which is missing"));
    }
  }
  execve(program_path_.c_str(), argv.data(), envp.data());
  reporter_.Fail(ErrnoStatus(
      errno, absl::StrCat("execve(", program_path_,
                          program_path_ == plan_.argv[0] ? "" : absl::StrCat(", named ", plan_.argv[0]),
                          ")")));
}

}  // namespace

void RunChild(const ChildPlan& plan) {
  Child child(plan);
  child.Run();
}

}  // namespace capbroker::sandbox
