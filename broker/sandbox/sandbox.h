// Launches one program confined: the sandbox of a hosted service.
//
// StartLaunch() starts `spec.argv` in new user, mount, pid, ipc, uts and network
// namespaces, on a minimal read-only root, with no privileges, a seccomp
// filter and Landlock, holding exactly the fds the spec lists (at 3.., with
// systemd's LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES) plus its broker
// connection (CAPBROKER_FD). Every other fd is closed.
//
// Each protection is required, best-effort or off. A required protection
// that cannot be put in place stops the launch, and the status names the
// protection and the kernel's reason; a best-effort one that cannot is left
// out and listed in `LaunchedProcess::missing`.
//
// The launch is asynchronous, for a caller with an event loop (the broker):
// StartLaunch() creates the child and lets it go, and returns a
// PendingLaunch; the child sets itself up (mounts, pivot_root, ids,
// filters: about a millisecond) and reports on a pipe until execve. The
// caller watches that pipe and finishes the launch when it becomes
// readable. Nothing here waits for the child: a child stuck in its setup
// (its program or a directory grant on a hung NFS or FUSE mount, where even
// SIGKILL cannot end a pending request) stalls nobody. The caller's
// deadline bounds the launch, and a child given up on is reaped by the
// caller when its pidfd says it has exited.
//
// The service is pid 1 of its pid namespace: killing it (through the pidfd)
// kills everything it started. It gets SIGKILL too when the thread that
// called StartLaunch exits (PR_SET_PDEATHSIG), a signal the seccomp filter
// lets it neither clear nor change (seccomp_filter.h).
//
// The caller must be single-threaded (the broker is): the child runs
// ordinary code between clone and execve. A broker that is not root writes
// its child's /proc/PID/uid_map itself, which the kernel allows only while
// the broker is dumpable: one that dropped root by itself must set
// PR_SET_DUMPABLE again.
#ifndef CAPBROKER_BROKER_SANDBOX_SANDBOX_H_
#define CAPBROKER_BROKER_SANDBOX_SANDBOX_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/sandbox/settings.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {

// An fd the service receives, in order at 3, 4, ...
//
// A directory fd (any, whether `directory` says so or not) reaches the
// service as a new fd on a detached bind mount of that directory alone, so
// that ".." at its top stays there: through the broker's own fd, "..", stat
// and connect(2) to pathname sockets would reach the whole host, which
// Landlock does not stop. A broker with CAP_SYS_ADMIN (root) clones the
// mount from its fd; one without leaves that to the child, which finds the
// directory again by its path (and checks it is the same inode), so that
// the directory must then be reachable by path in the broker's mount
// namespace. Either way the child opens the directory again without
// CAP_DAC_OVERRIDE over other users' files (detached_dir.h); when it cannot,
// protectSystem fails, and the error names the grant.
struct PassedFd {
  std::string name;  // for LISTEN_FDNAMES; [A-Za-z0-9_.-]
  int fd = -1;       // borrowed; the child gets a dup
  // For a directory fd: what Landlock lets the service do beneath it.
  bool directory = false;
  bool writable = false;
};

struct SandboxSpec {
  std::string name;                // the service, for messages and the hostname
  // argv[0]: the program, an absolute path. Run at its real path, every
  // link resolved when the child starts, with argv[0] as given: the file
  // that runs is the file that was opened, even where the link is not in
  // the minimal root. For a `#!` script the kernel hands the interpreter
  // the path execve got, so its $0 (sys.argv[0]) is that real path, not
  // the link; a binary sees argv[0] as given.
  std::vector<std::string> argv;
  std::vector<std::string> env;    // "KEY=VALUE", nothing inherited
  std::vector<PassedFd> fds;       // at 3.. in this order
  int broker_fd = -1;              // borrowed; placed after `fds`, announced
                                   // in CAPBROKER_FD; -1 for none
  // The uid and gid the service runs as, outside its user namespace (the
  // same numbers inside). A broker that is not root can only use its own.
  // uid 0 is the host's root as far as files go (a root-owned 0600 file in
  // /etc is readable): prefer a uid of the service's own.
  uid_t uid = 0;
  gid_t gid = 0;
  // Host paths the service must not read (absolute, without "." or "..";
  // any other is refused with kInvalidArgument): the broker's own
  // configuration, its policy above all. Where the minimal
  // root (protectSystem) holds one, in /etc or a system directory, an empty
  // read-only file or directory is mounted over it (one the service's ids
  // cannot reach anyway, with a user namespace, is left alone); without
  // protectSystem the whole host is in view and nothing is hidden.
  std::vector<std::string> hidden_paths;
  Protections protections;
  ResourceLimits limits;
};

struct LaunchedProcess {
  pid_t pid = -1;       // in the broker's pid namespace
  UniqueFd pidfd;       // CLOEXEC
  UniqueFd output;      // read end of the service's stdout and stderr; CLOEXEC, non-blocking
  // What is in force, in this order and spelling:
  // "userns mountns pidns ipcns utsns netns nnp caps seccomp landlock:N cgroup".
  std::vector<std::string> in_force;
  // Best-effort protections that could not be put in place, each with why:
  // "landlock: not supported by this kernel".
  std::vector<std::string> missing;
  // The cgroup directory created for the service ("" when none): the caller
  // removes it (rmdir) once it has reaped the service; the kernel refuses
  // while a process is in it. Without a pid namespace, processes the service
  // started may still be: KillCgroup (cgroup.h) first.
  std::string cgroup;
};

// What is left of a launch that failed or was given up on: the child, sent
// SIGKILL. The owner reaps it once `pidfd` is readable (waitid(P_PIDFD,
// WNOHANG); never a blocking wait, since a child stuck in a file system may
// take any time to die), then removes `cgroup` unless it is "".
struct AbandonedChild {
  pid_t pid = -1;
  UniqueFd pidfd;  // CLOEXEC
  std::string cgroup;
  // Whether the child may have run its program: it may have reached
  // execve after the caller last read its report and before the SIGKILL
  // (MayHaveRunProgram, namespaces.h). Such a process had the start grants:
  // the caller keeps it in sight until it has died, as a process of the
  // service, rather than reap it unseen. False only when it provably did
  // not.
  bool may_have_run = false;
};

// A launch under way: the child exists and sets itself up. The caller
// watches report_fd() and calls Continue() each time it is readable, until
// Continue() returns the process or an error; neither call blocks. After an
// error, or when the caller's own deadline passes first, it calls Abandon().
//
// An interface so that the service host's tests can script launches;
// StartLaunch() makes the real ones. Destroying a launch that still holds
// its child (neither handed over nor abandoned) sends SIGKILL and leaves the
// child unreaped: always hand it over.
class PendingLaunch {
 public:
  virtual ~PendingLaunch() = default;

  // The child, in the caller's pid namespace.
  virtual pid_t pid() const = 0;

  // Readable (or hung up) when the child has reported more; borrowed,
  // non-blocking, close-on-exec, open until the launch is over.
  virtual int report_fd() const = 0;

  // Reads what the child has reported so far. nullopt: it is still setting
  // itself up. Otherwise the program is running (the process is handed
  // over, and the launch is over), or the launch failed (the same error
  // again at every later call; call Abandon()). The code of a failure says
  // whether trying again may help:
  // - kResourceExhausted, kUnavailable: a shortage that may pass (EMFILE,
  //   ENFILE, ENOMEM, EAGAIN at the process limit), also when it stopped a
  //   required protection; a child that died before execve;
  // - kDeadlineExceeded: a child that died before execve and was still
  //   exiting kExitAfterReportMs after it closed its report (see
  //   CheckReachedExecve);
  // - anything else fails the same way until the spec or the system
  //   changes: kInvalidArgument (the spec), kNotFound or kPermissionDenied
  //   (the program, ids, limits), kFailedPrecondition (a required
  //   protection the kernel refuses: EPERM, EINVAL, ENOSPC at a namespace
  //   limit, ...).
  virtual absl::StatusOr<std::optional<LaunchedProcess>> Continue() = 0;

  // Gives the launch up: SIGKILL to the child, which is handed over to be
  // reaped, with whether it may have run its program by then
  // (AbandonedChild::may_have_run). Call once, unless Continue() handed the
  // process over.
  virtual AbandonedChild Abandon() = 0;
};

// How long Continue() waits, at most, for a child that died before execve
// to finish exiting once its report pipe is closed.
inline constexpr int kExitAfterReportMs = 50;

// Settles what can be known before the clone (the spec, the Landlock ABI,
// the seccomp filter, the cgroup), creates the child in its namespaces,
// writes its id maps and lets it go. An error here (the codes of Continue)
// means no child was created. A failure after the clone (opening the
// child's name, writing the id maps) is returned by the first Continue(),
// the child never let go.
absl::StatusOr<std::unique_ptr<PendingLaunch>> StartLaunch(const SandboxSpec& spec);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_SANDBOX_H_
