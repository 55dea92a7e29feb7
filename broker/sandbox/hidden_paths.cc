#include "broker/sandbox/hidden_paths.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "broker/sandbox/minimal_root.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {
namespace {

// Where the empty directory and file are made, in a small tmpfs of their
// own that is made read-only before anything is bound from it: a bind
// mount takes the flags of its source, so each hiding mount is read-only
// from the moment it exists. The tmpfs is detached again at the end.
constexpr const char* kSourceDir = "/.hidden";
constexpr const char* kSourceOptions = "mode=0755,size=4k,nr_inodes=4";

// The path `path` names inside `root_fd` (O_PATH), or an invalid fd when
// nothing is there, or, `as_service`, when the caller may not reach it (see
// HidePaths).
absl::StatusOr<UniqueFd> ResolveInRoot(int root_fd, const std::string& path, bool as_service) {
  absl::StatusOr<UniqueFd> fd =
      Openat2(root_fd, path.substr(1), O_PATH, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  if (fd.ok()) return fd;
  const int errnum = OpenatErrno(fd.status());
  if (errnum == ENOENT || errnum == ENOTDIR) return UniqueFd();
  // An O_PATH open checks only search permission on the directories on
  // the way. Refused with the service's fs ids and at least its groups,
  // and with capabilities it will not have, the lookup is refused to the
  // service too: nothing to hide from it.
  if (errnum == EACCES && as_service) return UniqueFd();
  return ErrnoStatus(errnum, absl::StrCat("openat2(", path, ", RESOLVE_IN_ROOT)"));
}

// The read-only tmpfs holding an empty directory "dir" and an empty file
// "file", at `source`.
absl::Status MakeSources(const std::string& source) {
  if (mkdir(source.c_str(), 0755) != 0) return ErrnoStatus(errno, absl::StrCat("mkdir(", source, ")"));
  if (mount("tmpfs", source.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            kSourceOptions) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount(tmpfs, ", source, ")"));
  }
  std::string dir = source + "/dir";
  if (mkdir(dir.c_str(), 0555) != 0) return ErrnoStatus(errno, absl::StrCat("mkdir(", dir, ")"));
  std::string file = source + "/file";
  // Closed before the mount turns read-only, which a file open for writing
  // on it would refuse (EBUSY).
  CB_RETURN_IF_ERROR(TakeFd(open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444),
                            absl::StrCat("open(", file, ", O_CREAT)"))
                         .status());
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  if (mount_setattr(AT_FDCWD, source.c_str(), 0, &attr, sizeof attr) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount_setattr(", source, ")"));
  }
  return absl::OkStatus();
}

absl::Status Hide(int root_fd, const std::string& source, const std::string& path,
                  bool as_service) {
  CB_RETURN_IF_ERROR(CheckHiddenPath(path));
  CB_ASSIGN_OR_RETURN(UniqueFd target, ResolveInRoot(root_fd, path, as_service));
  if (!target.valid()) return absl::OkStatus();
  struct stat st;
  if (fstat(target.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(", path, ")"));
  std::string empty = absl::StrCat(source, S_ISDIR(st.st_mode) ? "/dir" : "/file");
  // mount(2) follows the magic link to the very inode resolved above.
  std::string at = absl::StrCat("/proc/self/fd/", target.get());
  if (mount(empty.c_str(), at.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount(", empty, ", ", path, ", MS_BIND)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckHiddenPath(absl::string_view path) {
  if (IsNormalAbsolutePath(path)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("hidden path '", path, "' must be absolute, without '.' or '..'"));
}

absl::Status HidePaths(const std::string& root, const std::vector<std::string>& paths,
                       bool as_service) {
  if (paths.empty()) return absl::OkStatus();
  CB_ASSIGN_OR_RETURN(UniqueFd root_fd, TakeFd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC),
                                               absl::StrCat("open(", root, ", O_PATH)")));
  const std::string source = root + kSourceDir;
  CB_RETURN_IF_ERROR(MakeSources(source));
  for (const std::string& path : paths) {
    CB_RETURN_IF_ERROR(Hide(root_fd.get(), source, path, as_service));
  }
  if (umount2(source.c_str(), MNT_DETACH) != 0) {
    return ErrnoStatus(errno, absl::StrCat("umount2(", source, ", MNT_DETACH)"));
  }
  if (rmdir(source.c_str()) != 0) return ErrnoStatus(errno, absl::StrCat("rmdir(", source, ")"));
  return absl::OkStatus();
}

}  // namespace capbroker::sandbox
