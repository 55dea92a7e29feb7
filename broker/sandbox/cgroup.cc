#include "broker/sandbox/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

// How to make a directory CheckCgroupParent accepts, for its messages.
constexpr absl::string_view kCgroupParentHint =
    "; give --cgroup a cgroup v2 directory the broker may create cgroups in, whose "
    "cgroup.subtree_control enables memory and pids: as root, mkdir "
    "/sys/fs/cgroup/capbroker, then echo '+memory +pids' into "
    "/sys/fs/cgroup/cgroup.subtree_control and /sys/fs/cgroup/capbroker/"
    "cgroup.subtree_control (or use Delegate=yes in the broker's systemd unit)";

absl::Status WriteLimit(int dirfd, const std::string& dir, const char* file, uint64_t value) {
  std::string path = absl::StrCat(dir, "/", file);
  int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " does not exist: the controller is not enabled in the parent's "
                "cgroup.subtree_control"));
    }
    return ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
  }
  UniqueFd owned(fd);
  std::string text = absl::StrCat(value);
  ssize_t n = RetryEintr([&] { return write(fd, text.data(), text.size()); });
  if (n != static_cast<ssize_t>(text.size())) {
    return ErrnoStatus(n < 0 ? errno : EIO, absl::StrCat("write(", path, ", ", text, ")"));
  }
  return absl::OkStatus();
}

// The controllers `dir` enables for its children: its cgroup.subtree_control,
// e.g. "memory pids\n".
absl::StatusOr<std::string> ReadSubtreeControl(const std::string& dir) {
  std::string path = absl::StrCat(dir, "/cgroup.subtree_control");
  CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(RetryEintr([&] {
                                            return open(path.c_str(), O_RDONLY | O_CLOEXEC);
                                          }),
                                          absl::StrCat("open(", path, ")")));
  std::string text(4096, '\0');
  ssize_t n = RetryEintr([&] { return read(fd.get(), text.data(), text.size()); });
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(", path, ")"));
  text.resize(static_cast<size_t>(n));
  return text;
}

}  // namespace

absl::StatusOr<CgroupParent> CheckCgroupParent(absl::string_view dir_view) {
  std::string dir(dir_view);
  const absl::string_view fix = kCgroupParentHint;
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("--cgroup ", dir, ": no such directory", fix));
    }
    return ErrnoStatus(errno, absl::StrCat("--cgroup ", dir, ": stat"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("--cgroup ", dir, ": not a directory", fix));
  }
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) != 0) {
    return ErrnoStatus(errno, absl::StrCat("--cgroup ", dir, ": statfs"));
  }
  if (fs.f_type != CGROUP2_SUPER_MAGIC) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--cgroup ", dir, ": not a cgroup v2 directory (cgroup2 is mounted where "
        "`findmnt -t cgroup2` says, often /sys/fs/cgroup)", fix));
  }
  CB_ASSIGN_OR_RETURN(std::string controllers, ReadSubtreeControl(dir));
  CgroupParent parent;
  parent.path = dir;
  for (absl::string_view name : absl::StrSplit(controllers, absl::ByAnyChar(" \n"),
                                               absl::SkipEmpty())) {
    if (name == "memory") parent.memory = true;
    if (name == "pids") parent.pids = true;
  }
  if (!parent.memory && !parent.pids) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--cgroup ", dir, ": its cgroup.subtree_control enables neither the memory nor "
        "the pids controller, so no service limit (memoryMax, pidsMax) could be set "
        "there (it enables: ",
        controllers.find_first_not_of(" \n") == std::string::npos
            ? "none"
            : std::string(absl::StripAsciiWhitespace(controllers)),
        ")", fix));
  }
  // What a launch does first: make a cgroup of the service's own there.
  std::string probe = absl::StrCat(dir, "/capbroker-probe-", getpid());
  if (mkdir(probe.c_str(), 0755) != 0) {
    int saved = errno;
    absl::Status status = ErrnoStatus(
        saved, absl::StrCat("--cgroup ", dir, ": cannot create a cgroup there (mkdir ",
                            probe, ")", saved == EACCES || saved == EPERM || saved == EROFS
                                            ? absl::StrCat("; delegate the directory to the "
                                                           "broker's user (chown -R that "
                                                           "user ", dir, ")")
                                            : ""));
    return status;
  }
  if (rmdir(probe.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("--cgroup ", dir, ": rmdir ", probe));
  }
  return parent;
}

absl::Status KillCgroup(const std::string& path) {
  std::string file = absl::StrCat(path, "/cgroup.kill");
  int fd = RetryEintr([&] { return open(file.c_str(), O_WRONLY | O_CLOEXEC); });
  if (fd < 0 && errno == ENOENT && access(path.c_str(), F_OK) == 0) {
    return absl::UnimplementedError(
        absl::StrCat(file, " does not exist: this kernel (before 5.14) cannot kill a cgroup"));
  }
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open(", file, ")"));
  UniqueFd owned(fd);
  if (RetryEintr([&] { return write(fd, "1", 1); }) != 1) {
    return ErrnoStatus(errno, absl::StrCat("write(", file, ", 1)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> WatchCgroupEvents(const std::string& path) {
  CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK),
                                          "inotify_init1"));
  std::string file = absl::StrCat(path, "/cgroup.events");
  if (inotify_add_watch(fd.get(), file.c_str(), IN_MODIFY) < 0) {
    return ErrnoStatus(errno, absl::StrCat("inotify_add_watch(", file, ")"));
  }
  return fd;
}

void DrainEvents(int inotify_fd) {
  alignas(inotify_event) char buffer[4096];
  while (RetryEintr([&] { return read(inotify_fd, buffer, sizeof buffer); }) > 0) {
  }
}

absl::StatusOr<ServiceCgroup> ServiceCgroup::Create(absl::string_view parent,
                                                    absl::string_view leaf,
                                                    uint64_t memory_max,
                                                    uint64_t pids_max) {
  std::string parent_path(parent);
  struct statfs fs;
  if (statfs(parent_path.c_str(), &fs) != 0) {
    return ErrnoStatus(errno, absl::StrCat("statfs(", parent_path, ")"));
  }
  if (fs.f_type != CGROUP2_SUPER_MAGIC) {
    return absl::FailedPreconditionError(
        absl::StrCat(parent_path, " is not a cgroup v2 directory"));
  }
  std::string path = absl::StrCat(parent_path, "/", leaf);
  if (mkdir(path.c_str(), 0755) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mkdir(", path, ")"));
  }
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    absl::Status status = ErrnoStatus(errno, absl::StrCat("open(", path, ")"));
    rmdir(path.c_str());
    return status;
  }
  ServiceCgroup cgroup(path, UniqueFd(fd));
  absl::Status status = absl::OkStatus();
  if (memory_max != 0) status = WriteLimit(fd, path, "memory.max", memory_max);
  if (status.ok() && pids_max != 0) status = WriteLimit(fd, path, "pids.max", pids_max);
  if (!status.ok()) {
    cgroup.Remove().IgnoreError();  // the limit's error is the one to report
    return status;
  }
  return cgroup;
}

ServiceCgroup::ServiceCgroup(ServiceCgroup&& other) noexcept
    : path_(std::exchange(other.path_, std::string())), fd_(std::move(other.fd_)) {}

ServiceCgroup& ServiceCgroup::operator=(ServiceCgroup&& other) noexcept {
  if (this != &other) {
    RemoveOrLog();
    path_ = std::exchange(other.path_, std::string());
    fd_ = std::move(other.fd_);
  }
  return *this;
}

ServiceCgroup::~ServiceCgroup() { RemoveOrLog(); }

void ServiceCgroup::RemoveOrLog() {
  if (path_.empty()) return;
  absl::Status removed = Remove();
  if (!removed.ok() && !absl::IsNotFound(removed)) {
    std::fprintf(stderr, "capbroker: a service cgroup was left behind: %s\n",
                 removed.ToString().c_str());
  }
}

std::string ServiceCgroup::Release() {
  fd_.reset();
  return std::exchange(path_, std::string());
}

absl::Status ServiceCgroup::Remove() {
  if (path_.empty()) return absl::OkStatus();
  fd_.reset();
  std::string path = std::move(path_);
  path_.clear();
  if (rmdir(path.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rmdir(", path, ")"));
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox
