// The service's system call filter (seccomp-bpf, built with libseccomp).
//
// Default allow, with a deny list: what a confined service never needs and
// what would widen its view of the system (mounts, namespaces, ptrace, kernel
// modules, keyrings, BPF, io_uring, ...), clearing or changing the
// parent-death signal (SIGKILL, which ends the service with its broker),
// and setuid or setgid mode bits (chmod and the calls that create files,
// as systemd's RestrictSUIDSGID=). Denied calls fail with EPERM, so that
// programs probing for features degrade instead of dying; clone3 and
// openat2 fail with ENOSYS so that glibc falls back to clone and openat,
// whose flags and mode the filter can see (clone3 and openat2 pass them in
// memory, out of the filter's reach). socket() and socketpair() are allowed
// only in the permitted address families and fail with EAFNOSUPPORT
// otherwise. A system call of another architecture (the
// i386 or x32 entry points on x86_64) kills the process. A system call newer
// than the deny list (any number above the newest call it was reviewed
// against) fails with ENOSYS, as on a kernel without it (syscall_ceiling.h).
//
// The filter is built in the broker, where errors are easy to report, and
// installed in the child with one system call.
#ifndef CAPBROKER_BROKER_SANDBOX_SECCOMP_FILTER_H_
#define CAPBROKER_BROKER_SANDBOX_SECCOMP_FILTER_H_

#include <linux/filter.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace capbroker::sandbox {

// The newest system call the deny list was reviewed against (futex_requeue,
// 456, Linux 6.7), which is also the newest libseccomp 2.5.4 knows as Debian
// 12 ships it: every number above it fails with ENOSYS. Raising it is a
// review of every call in between, since the list can name only what
// libseccomp knows.
inline constexpr const char* kNewestReviewedSyscall = "futex_requeue";

// Denied with EPERM, whatever the arguments. Every name must be one
// ResolveSyscall knows, or BuildSeccompFilter fails.
inline constexpr const char* kDeniedSyscalls[] = {
    // Debugging and reading other processes' memory.
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "process_madvise",
    // Mounts, old and new API.
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    // Namespaces (clone's flags are filtered by BuildSeccompFilter).
    "unshare", "setns",
    // The kernel itself.
    "bpf", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "syslog", "acct",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "quotactl",
    "quotactl_fd", "lookup_dcookie", "iopl", "ioperm", "vhangup",
    "nfsservctl", "uselib", "perf_event_open", "fanotify_init",
    "userfaultfd",
    // Keyrings.
    "keyctl", "add_key", "request_key",
    // File handles bypass path-based checks.
    "open_by_handle_at", "name_to_handle_at",
    // io_uring performs operations outside this filter's view.
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    // x86's local descriptor table: 16-bit segments for emulators, a history
    // of kernel bugs, and nothing a 64-bit service needs.
    "modify_ldt",
};

// A compiled filter: classic BPF instructions.
class SeccompProgram {
 public:
  explicit SeccompProgram(std::vector<sock_filter> instructions)
      : instructions_(std::move(instructions)) {}

  const std::vector<sock_filter>& instructions() const { return instructions_; }

 private:
  std::vector<sock_filter> instructions_;
};

// The native number of system call `name`, which every rule of the filter is
// built from. kInternal when libseccomp does not know the name, or knows it
// only for another architecture (socketcall on x86_64): its placeholder
// number would make seccomp_rule_add leave the rule out, and the call would
// be allowed.
absl::StatusOr<int> ResolveSyscall(const char* name);

// Builds the filter. `allowed_socket_families` are AF_* values; every other
// family is denied for socket() and socketpair().
absl::StatusOr<SeccompProgram> BuildSeccompFilter(
    absl::Span<const int> allowed_socket_families);

// Installs `program` on the calling thread. The kernel requires
// no_new_privs (or CAP_SYS_ADMIN) first. Async-signal-safe: no allocation.
absl::Status InstallSeccompFilter(const SeccompProgram& program);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_SECCOMP_FILTER_H_
