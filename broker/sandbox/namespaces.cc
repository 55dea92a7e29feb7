#include "broker/sandbox/namespaces.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

// struct clone_args of <linux/sched.h> (CLONE_ARGS_SIZE_VER2), declared
// here because that header clashes with glibc's <sched.h>.
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};
static_assert(sizeof(CloneArgs) == 88, "clone_args v2 is 88 bytes");

constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;

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
  int pidfd = -1;
  pid_t pid = RawClone3(namespace_flags, cgroup_fd, &pidfd);
  if (pid < 0) {
    uint64_t named = namespace_flags | (cgroup_fd >= 0 ? kCloneIntoCgroup : 0);
    return ErrnoStatus(errno, absl::StrCat("clone3(", CloneFlagNames(named), ")"));
  }
  CloneResult result;
  result.pid = pid;
  if (pid > 0) result.pidfd.reset(pidfd);
  return result;
}

absl::Status ProbeNamespace(uint64_t flag, uint64_t with_flags) {
  int pidfd = -1;
  pid_t pid = RawClone3(flag | with_flags, -1, &pidfd);
  if (pid < 0) {
    return ErrnoStatus(errno, absl::StrCat("clone3(", CloneFlagNames(flag), ")"));
  }
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

void KillAndReap(const CloneResult& child) {
  if (child.pid <= 0) return;
  if (child.pidfd.valid()) {
    // ESRCH: it has exited already (it reported a failure); reaped below.
    if (syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
      std::fprintf(stderr, "capbroker: pidfd_send_signal(pid=%d, SIGKILL): %s\n",
                   child.pid, std::strerror(errno));
    }
  }
  if (RetryEintr([&] { return waitpid(child.pid, nullptr, 0); }) < 0) {
    std::fprintf(stderr, "capbroker: waitpid(%d): %s\n", child.pid, std::strerror(errno));
  }
}

}  // namespace capbroker::sandbox
