#include "broker/sandbox/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

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

}  // namespace

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

absl::Status ServiceCgroup::Remove() {
  if (path_.empty()) return absl::OkStatus();
  fd_.reset();
  std::string path = std::move(path_);
  path_.clear();
  if (rmdir(path.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rmdir(", path, ")"));
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox
