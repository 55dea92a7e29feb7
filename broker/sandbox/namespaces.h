// Creating the service's process in new namespaces: clone3, id maps, probes.
//
// The process is created with clone3(2) like fork (no new stack, exit signal
// SIGCHLD) with CLONE_PIDFD, so the broker holds a pidfd from the first
// instant and never has to trust a pid that might be reused. When clone3
// fails, the kernel does not say which namespace it refused: ProbeNamespace
// tries them one at a time so that the error can name it.
#ifndef CAPBROKER_BROKER_SANDBOX_NAMESPACES_H_
#define CAPBROKER_BROKER_SANDBOX_NAMESPACES_H_

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {

// "CLONE_NEWNET"; "CLONE_NEWUSER|CLONE_NEWNS" for several flags.
std::string CloneFlagNames(uint64_t flags);

// "a network namespace", for messages ("... could not be created").
absl::string_view NamespaceDescription(uint64_t flag);

struct CloneResult {
  pid_t pid = -1;  // 0 in the child
  UniqueFd pidfd;  // the parent's; close-on-exec (the kernel sets it)
};

// The name (comm) a launched child bears from its first instruction, kept
// until execve sets the program's base name. A base name never holds a '/',
// so a process still named this has not run its program.
inline constexpr char kSetupName[] = "capbroker/setup";

// Creates a child process like fork(2), in new namespaces `namespace_flags`
// (CLONE_NEW*), and in the cgroup `cgroup_fd` (borrowed, CLONE_INTO_CGROUP)
// unless it is -1, named kSetupName from its first instruction: the calling
// thread bears that name across the clone, which the child inherits, and
// then takes its own back. A name the child would give itself could come
// after the broker killed it (it may not have run yet), and a child still
// bearing the broker's name would pass for a program that ran
// (MayHaveRunProgram). Returns twice, like fork: pid 0 in the child, which must
// leave with _exit or execve. The caller must be single-threaded: the child
// runs ordinary code, and glibc's fork handlers do not run. glibc still
// holds the parent's thread id in the child (only its own fork updates it),
// so the child must not call pthread functions or raise(3).
absl::StatusOr<CloneResult> CloneProcess(uint64_t namespace_flags, int cgroup_fd);

// Whether `clone_error`, a failure of CloneProcess or ProbeNamespace, is
// the kernel refusing a namespace: EPERM (no privilege, or a sysctl or LSM
// forbids it), ENOSPC and EUSERS (a namespace count limit,
// max_*_namespaces), EINVAL (a kind this kernel lacks). Other errnos (EAGAIN
// at the process or pid limit, ENOMEM) say nothing about namespaces.
bool NamespaceRefused(const absl::Status& clone_error);

// Whether a namespace of kind `flag` can be created, together with
// `with_flags` (CLONE_NEWUSER, on which the others depend for a broker that
// is not root): creates a child that shares the caller's fd table and exits
// at once, and reaps it; it waits on nothing else. OK, or the
// clone3 error as "clone3(CLONE_NEWNET): Operation not permitted".
absl::Status ProbeNamespace(uint64_t flag, uint64_t with_flags);

// Writes the id maps of `pid`'s new user namespace: `uid` and `gid` mapped to
// the same numbers inside. With `deny_setgroups`, first writes "deny" to
// /proc/PID/setgroups, which the kernel requires before an unprivileged
// process may write gid_map.
absl::Status WriteIdMaps(pid_t pid, uid_t uid, gid_t gid, bool deny_setgroups);

// Whether this process's user namespace lets it call setgroups(2): false
// when /proc/self/setgroups says "deny" (set by whoever created the
// namespace; it is inherited by every namespace created below it).
bool SetgroupsAllowed();

// Sends SIGKILL to `child` through its pidfd (a child that has exited
// already is no error). Does not reap it: the caller waits for its pidfd to
// become readable, from its event loop, since a child stuck in a file system
// (a hung NFS or FUSE server) may take any time to die.
void Kill(const CloneResult& child);

// How a process ended, from waitid(2): "exit status 3", "killed by SIGKILL",
// "dumped core on SIGSEGV".
std::string DescribeExit(const siginfo_t& info);

// Opens the name (/proc/PID/comm) of `pid`, a child of this process just
// created by CloneProcess and not reaped (so `pid` is that child: only its
// parent reaps it), for CheckReachedExecve and MayHaveRunProgram: reading
// it through this fd (close-on-exec) needs no new fd, so a broker at its
// fd limit can still tell a child that died before execve from a program
// that ran, and the fd shows that child's name only: its current one at
// every read (pread at offset 0 starts procfs's text over), none once the
// child is reaped (ESRCH), never that of a process that took its pid
// later. Read once here, which also allocates what later reads use; the
// child must still bear kSetupName, as it does until execve. Errors:
// kResourceExhausted at the broker's or the system's fd limit (EMFILE,
// ENFILE), saying which; kInternal for a name other than kSetupName; the
// errno's code for any other failure of the open or the read. The open does not wait: a file lease on the name
// (F_SETLEASE, by a process of the child's uid) fails it (EWOULDBLOCK).
absl::StatusOr<UniqueFd> OpenName(pid_t pid);

// For a child named kSetupName whose close-on-exec report pipe has reached
// end of file without a failure, `name_fd` its name (OpenName, borrowed):
// OK when it went through execve, even if the program has exited since;
// kUnavailable ("died before execve (killed by SIGKILL)") when it died
// before, which also closes the pipe (the OOM killer, an administrator's
// kill). A name other than kSetupName is proof: execve sets it before the
// program's first instruction. Ours is not, since execve sets it only
// after it has closed the close-on-exec fds: then /proc/PID/exe tells,
// which needs no fd, resolves inside an execve, and not once an exit has
// released the child's memory. A name that cannot be read (not expected:
// OpenName's fd and buffer serve every read) proves nothing: OK, and the
// child's exit is then seen through its pidfd like any exit.
// kDeadlineExceeded when a dying child is not dead within `timeout_ms`: its
// exit is under way (its memory is gone), so this waits only while it
// closes its other fds, which takes microseconds unless one is on a hung
// file system; keep it short. Never reaps the child.
absl::Status CheckReachedExecve(const CloneResult& child, int name_fd, int timeout_ms);

// For a child sent SIGKILL before its launch was over (not reaped yet),
// `name_fd` its name (OpenName, borrowed): whether it may have run its
// program. False only when it still bears kSetupName, which execve
// replaces before the program's first instruction: killed, it never runs
// one (the pending SIGKILL ends it before it returns to user space), even
// if it is inside execve now. Any other name (a program that ran), or one
// that cannot be read: true, since once it is dead nothing else can tell.
// A program that names itself kSetupName is taken for a child that never
// ran one; it had to run, and rename itself, between the launch's last read
// of its report and the kill.
bool MayHaveRunProgram(int name_fd);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_NAMESPACES_H_
