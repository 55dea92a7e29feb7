// Thin helpers for calling the kernel: EINTR retry and errno-to-status.
//
// Every syscall capbroker makes goes through RetryEintr (where EINTR can
// happen) and reports failure with ErrnoStatus, whose message names the call
// and its arguments: "recvmsg(fd=7): Connection reset by peer".
#ifndef CAPBROKER_SDK_BASE_SYSCALL_H_
#define CAPBROKER_SDK_BASE_SYSCALL_H_

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {

// Calls `call` until it returns something other than -1 with errno EINTR.
// errno is left as the last call set it.
template <typename Call>
auto RetryEintr(Call call) -> decltype(call()) {
  decltype(call()) result;
  do {
    result = call();
  } while (result == -1 && errno == EINTR);
  return result;
}

// A status for a failed call: the code follows absl::ErrnoToStatus and the
// message is "<what>: <strerror(errnum)>".
absl::Status ErrnoStatus(int errnum, absl::string_view what);

// Takes ownership of the fd a call returned: a UniqueFd when `fd` >= 0,
// else ErrnoStatus(errno, what). Use as TakeFd(open(...), "open(path)").
absl::StatusOr<UniqueFd> TakeFd(int fd, absl::string_view what);

// Opens the file `fd` (borrowed) refers to again, with `flags` (O_CLOEXEC
// added), through /proc/self/fd/N: a new open file description of the very
// same inode, whatever its path names by now. ErrnoStatus(errno, what) when
// it cannot.
absl::StatusOr<UniqueFd> Reopen(int fd, int flags, absl::string_view what);

// openat2(2): `path` looked up in `dirfd` (borrowed; AT_FDCWD for the
// working directory) with `flags` (O_CLOEXEC added), `mode` (only with
// O_CREAT or O_TMPFILE: openat2 refuses a mode otherwise) and `resolve`
// (RESOLVE_*). EINTR is retried, and so is EAGAIN, a few times: the kernel
// answers a lookup raced by a rename or a mount with it (RESOLVE_BENEATH,
// RESOLVE_IN_ROOT, RESOLVE_NO_SYMLINKS, RESOLVE_CACHED) and asks callers
// to try again. With RESOLVE_CACHED, EAGAIN that persists means that the
// kernel's caches do not settle the lookup.
//
// On failure, ErrnoStatus(errno, "openat2(PATH)") ("openat2(fd=N, PATH)"
// for a `dirfd` other than AT_FDCWD), the path as given, unescaped. The
// errno itself, which the code alone does not tell (ENOENT from ENOTDIR,
// EXDEV, EAGAIN), is carried too: OpenatErrno(status).
absl::StatusOr<UniqueFd> Openat2(int dirfd, const std::string& path, uint64_t flags, mode_t mode,
                                 uint64_t resolve);

// The errno of a failed Openat2; 0 for any other status.
int OpenatErrno(const absl::Status& status);

// The kernel's MAXSYMLINKS: a path lookup that would follow more symlinks
// than this fails with ELOOP. The broker's own walks, which follow links
// themselves (broker/util/trusted_path, broker/caps/path_walk), stop there
// too.
inline constexpr int kMaxSymlinks = 40;

// The path the kernel has for the file `fd` (borrowed) refers to, as
// readlink of /proc/self/fd/N gives it (" (deleted)" appended for a file
// unlinked since). ErrnoStatus when it cannot be read.
absl::StatusOr<std::string> FdPath(int fd);

// Sets or clears O_NONBLOCK on `fd` (borrowed).
absl::Status SetNonBlocking(int fd, bool on);

// Whether O_NONBLOCK is set on `fd` (borrowed).
absl::StatusOr<bool> IsNonBlocking(int fd);

// The time on CLOCK_MONOTONIC, which no one can step (libstdc++'s
// steady_clock): deadlines are points on it.
absl::Duration MonotonicNow();

// The deadline `timeout` from now on MonotonicNow's clock;
// absl::InfiniteDuration() (none) for an infinite `timeout`.
absl::Duration DeadlineAfter(absl::Duration timeout);

// Waits until `fd` (borrowed) is ready for `events` (POLLIN, POLLOUT), or
// hung up or in error (the call that follows says which), or `deadline`
// (a DeadlineAfter) passes: true when ready, false when the deadline
// passed. A signal does not renew the wait: poll(2) is called again with
// the time left. With no deadline, true at once, without a system call
// (the blocking call that follows waits).
absl::StatusOr<bool> PollUntil(int fd, short events, absl::Duration deadline);

// Opens /dev/null on each of fds 0, 1 and 2 that is closed, as sudo and
// systemd do. Call it first in main(), before anything creates an fd: a
// program started with a standard fd closed would otherwise give that
// number to its first fd of its own (a socket, a file, a capability), and
// everything written to stdout or stderr would go into it; a program it
// runs would find its standard fds missing. Fails only if /dev/null cannot
// be opened.
absl::Status EnsureStandardFds();

// Marks every fd from `first` up close-on-exec, leaving each open:
// close_range(first, ~0U, CLOSE_RANGE_CLOEXEC) (Linux 5.11). For a program
// that may have inherited fds it did not ask for (from a shell, a script, a
// CI runner): they stay usable by whoever meant them (an flock held through
// an fd, a pipe whose end of file tells a supervisor that the program
// exited), but no program it execs or starts gets them. Closing them
// instead would break such uses. Fails only where the kernel refuses
// (before 5.11, or under a seccomp filter): ErrnoStatus naming the call.
absl::Status MarkCloseOnExecFrom(unsigned int first);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_SYSCALL_H_
