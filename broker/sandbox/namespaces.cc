#include "broker/sandbox/namespaces.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/types/optional.h"
#include "broker/sandbox/clone_args.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace capbroker::sandbox {
namespace {

struct FlagName {
  uint64_t flag;
  const char* name;
  const char* description;
};

constexpr FlagName kFlagNames[] = {
    {CLONE_NEWUSER, "CLONE_NEWUSER", "a user namespace"},
    {CLONE_NEWNS, "CLONE_NEWNS", "a mount namespace"},
    {CLONE_NEWPID, "CLONE_NEWPID", "a pid namespace"},
    {CLONE_NEWIPC, "CLONE_NEWIPC", "an ipc namespace"},
    {CLONE_NEWUTS, "CLONE_NEWUTS", "a uts namespace"},
    {CLONE_NEWNET, "CLONE_NEWNET", "a network namespace"},
    {CLONE_NEWCGROUP, "CLONE_NEWCGROUP", "a cgroup namespace"},
    {kCloneIntoCgroup, "CLONE_INTO_CGROUP", "a process in the cgroup"},
};

// The payload by which a clone3 failure carries its errno: the status code
// alone does not tell ENOSPC (a namespace limit) from ENOMEM.
constexpr absl::string_view kCloneErrno = "capbroker.clone_errno";

absl::Status CloneError(int errnum, uint64_t flags) {
  absl::Status status = ErrnoStatus(errnum, absl::StrCat("clone3(", CloneFlagNames(flags), ")"));
  status.SetPayload(kCloneErrno, absl::Cord(absl::StrCat(errnum)));
  return status;
}

// Returns the child's pid (0 in the child) or -1 with errno.
pid_t RawClone3(uint64_t flags, int cgroup_fd, int* pidfd) {
  CloneArgs args = {};
  args.flags = flags | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uintptr_t>(pidfd);
  args.exit_signal = SIGCHLD;
  if (cgroup_fd >= 0) {
    args.flags |= kCloneIntoCgroup;
    args.cgroup = static_cast<uint64_t>(cgroup_fd);
  }
  return static_cast<pid_t>(syscall(SYS_clone3, &args, sizeof args));
}

absl::Status WriteProcFile(pid_t pid, const char* file, absl::string_view text) {
  std::string path = absl::StrCat("/proc/", pid, "/", file);
  CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(open(path.c_str(), O_WRONLY | O_CLOEXEC),
                                          absl::StrCat("open(", path, ")")));
  // These files take the whole map in one write(2).
  ssize_t n = RetryEintr([&] { return write(fd.get(), text.data(), text.size()); });
  if (n != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(n < 0 ? errno : EIO,
                       absl::StrCat("write(", path, ", \"", absl::StripSuffix(text, "\n"), "\")"));
  }
  return absl::OkStatus();
}

// What a child's name says of whether it went through execve(2), which
// replaces kSetupName before the program's first instruction.
enum class NameSays {
  kSetup,    // it bears kSetupName: no program ran, unless one renamed itself so
  kProgram,  // another name
  kNothing,  // it could not be read
};

// Reads the name through `name_fd` (OpenName's). pread at offset 0 has
// procfs produce the text again, so it is the name borne now; the buffer it
// is produced in was allocated by the first read, OpenName's. Once the
// child is reaped, ESRCH: nothing, never another process's name. kNothing
// leaves pread's errno.
NameSays ReadName(int name_fd) {
  char text[64];
  ssize_t n = RetryEintr([&] { return pread(name_fd, text, sizeof text, 0); });
  if (n < 0) return NameSays::kNothing;
  return absl::StripSuffix(absl::string_view(text, n), "\n") == kSetupName ? NameSays::kSetup
                                                                           : NameSays::kProgram;
}

}  // namespace

std::string CloneFlagNames(uint64_t flags) {
  std::vector<std::string> names;
  for (const FlagName& f : kFlagNames) {
    if (flags & f.flag) {
      names.push_back(f.name);
      flags &= ~f.flag;
    }
  }
  if (flags != 0) names.push_back(absl::StrCat("0x", absl::Hex(flags)));
  if (names.empty()) return "0";
  return absl::StrJoin(names, "|");
}

absl::string_view NamespaceDescription(uint64_t flag) {
  for (const FlagName& f : kFlagNames) {
    if (f.flag == flag) return f.description;
  }
  return "a namespace";
}

absl::StatusOr<CloneResult> CloneProcess(uint64_t namespace_flags, int cgroup_fd) {
  char own_name[16] = {};  // TASK_COMM_LEN, with its terminating NUL
  if (prctl(PR_GET_NAME, own_name) != 0) return ErrnoStatus(errno, "prctl(PR_GET_NAME)");
  if (prctl(PR_SET_NAME, kSetupName) != 0) return ErrnoStatus(errno, "prctl(PR_SET_NAME)");
  int pidfd = -1;
  pid_t pid = RawClone3(namespace_flags, cgroup_fd, &pidfd);
  if (pid == 0) return CloneResult{.pid = 0, .pidfd = UniqueFd()};
  const int clone_errno = errno;
  if (prctl(PR_SET_NAME, own_name) != 0) {
    // Only the broker's name in ps(1) is wrong: the launch goes on.
    std::fprintf(stderr, "capbroker: prctl(PR_SET_NAME, \"%s\"): %s\n", own_name,
                 std::strerror(errno));
  }
  if (pid < 0) {
    return CloneError(clone_errno, namespace_flags | (cgroup_fd >= 0 ? kCloneIntoCgroup : 0));
  }
  return CloneResult{.pid = pid, .pidfd = UniqueFd(pidfd)};
}

bool NamespaceRefused(const absl::Status& clone_error) {
  absl::optional<absl::Cord> payload = clone_error.GetPayload(kCloneErrno);
  int errnum = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &errnum)) return false;
  return errnum == EPERM || errnum == ENOSPC || errnum == EUSERS || errnum == EINVAL;
}

absl::Status ProbeNamespace(uint64_t flag, uint64_t with_flags) {
  int pidfd = -1;
  // CLONE_FILES: the child shares the broker's fd table instead of copying
  // it, so its exit closes nothing. A copy's close of a file on a FUSE or
  // NFS mount waits for the server (FLUSH), and the broker waits for the
  // child below.
  pid_t pid = RawClone3(flag | with_flags | CLONE_FILES, -1, &pidfd);
  if (pid < 0) return CloneError(errno, flag);
  if (pid == 0) _exit(0);
  close(pidfd);
  if (RetryEintr([&] { return waitpid(pid, nullptr, 0); }) != pid) {
    return ErrnoStatus(errno, absl::StrCat("waitpid(", pid, ")"));
  }
  return absl::OkStatus();
}

absl::Status WriteIdMaps(pid_t pid, uid_t uid, gid_t gid, bool deny_setgroups) {
  if (deny_setgroups) CB_RETURN_IF_ERROR(WriteProcFile(pid, "setgroups", "deny"));
  CB_RETURN_IF_ERROR(WriteProcFile(pid, "uid_map", absl::StrCat(uid, " ", uid, " 1\n")));
  return WriteProcFile(pid, "gid_map", absl::StrCat(gid, " ", gid, " 1\n"));
}

bool SetgroupsAllowed() {
  int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;  // a kernel without the file predates the rule
  char text[16] = {};
  ssize_t n = RetryEintr([&] { return read(fd, text, sizeof text - 1); });
  close(fd);
  return n > 0 && std::strncmp(text, "allow", 5) == 0;
}

void Kill(const CloneResult& child) {
  if (!child.pidfd.valid()) return;
  // ESRCH: it has exited already (it reported a failure).
  if (syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0) != 0 &&
      errno != ESRCH) {
    std::fprintf(stderr, "capbroker: pidfd_send_signal(pid=%d, SIGKILL): %s\n", child.pid,
                 std::strerror(errno));
  }
}

std::string DescribeExit(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return absl::StrCat("exit status ", info.si_status);
  const char* name = sigabbrev_np(info.si_status);
  return absl::StrCat(info.si_code == CLD_DUMPED ? "dumped core on SIG" : "killed by SIG",
                      name != nullptr ? name : std::to_string(info.si_status));
}

absl::StatusOr<UniqueFd> OpenName(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/comm");
  // The file belongs to the child's uid, which may take a file lease on it
  // (fcntl F_SETLEASE) and ignore the break: a plain open would then wait
  // up to fs.lease-break-time (45 s), and the broker's loop with it.
  // O_NONBLOCK fails it at once (EWOULDBLOCK) instead. Reads break no lease.
  int fd = RetryEintr([&] { return open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC); });
  if (fd < 0) {
    const int errnum = errno;
    const absl::Status opened = ErrnoStatus(errnum, absl::StrCat("open(", path, ")"));
    const char* why = errnum == EMFILE   ? " (the broker is at its fd limit, RLIMIT_NOFILE)"
                      : errnum == ENFILE ? " (the system is at its limit of open files, "
                                           "fs.file-max)"
                                         : "";
    return absl::Status(opened.code(),
                        absl::StrCat("cannot hold the child's name open, by which the launch "
                                     "tells whether it reached execve: ",
                                     opened.message(), why));
  }
  UniqueFd name(fd);
  const NameSays says = ReadName(name.get());
  if (says == NameSays::kNothing) return ErrnoStatus(errno, absl::StrCat("read(", path, ")"));
  if (says == NameSays::kProgram) {
    return absl::InternalError(absl::StrCat(path, " does not read ", kSetupName,
                                            ", the name a new child bears until execve"));
  }
  return name;
}

bool MayHaveRunProgram(int name_fd) {
  // Killed, it runs nothing more: only what it bears now tells, and a name
  // that cannot be read is taken for a program that ran.
  return ReadName(name_fd) != NameSays::kSetup;
}

absl::Status CheckReachedExecve(const CloneResult& child, int name_fd, int timeout_ms) {
  // execve(2) sets the new name after it has closed the close-on-exec fds:
  // a name other than ours is proof, ours alone is not. One that cannot be
  // read tells nothing: taken for a program that ran, whose exit tells.
  if (ReadName(name_fd) != NameSays::kSetup) return absl::OkStatus();
  // Ours: exit(2) releases a process's memory (exit_mm) before its fds
  // (exit_files), while execve maps the new program before it closes any
  // fd: with the pipe closed and the name still ours, /proc/PID/exe
  // resolves only inside an execve past its point of no return. (A
  // program that has exited has no memory either, but it no longer bears
  // our name.) readlink needs no fd.
  std::string exe = absl::StrCat("/proc/", child.pid, "/exe");
  char target[1];
  if (readlink(exe.c_str(), target, sizeof target) >= 0 || errno != ENOENT) {
    return absl::OkStatus();
  }
  // Dying: its exit is under way, bounded only because closing an fd can
  // wait on a file system.
  pollfd p{child.pidfd.get(), POLLIN, 0};
  int ready = RetryEintr([&] { return poll(&p, 1, timeout_ms); });
  if (ready < 0) return ErrnoStatus(errno, "poll(pidfd)");
  if (ready == 0) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the child died before execve and was still exiting after ", timeout_ms, " ms"));
  }
  siginfo_t info{};
  if (RetryEintr([&] {
        return waitid(static_cast<idtype_t>(P_PIDFD), child.pidfd.get(), &info,
                      WEXITED | WNOHANG | WNOWAIT);
      }) != 0) {
    return ErrnoStatus(errno, absl::StrCat("waitid(pidfd of ", child.pid, ")"));
  }
  return absl::UnavailableError(
      absl::StrCat("the child died before execve (", DescribeExit(info), ")"));
}

}  // namespace capbroker::sandbox
