#include "broker/sandbox/detached_dir.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {

absl::StatusOr<UniqueFd> DetachDirectory(int dirfd, bool writable) {
  std::string link = absl::StrCat("/proc/self/fd/", dirfd);
  char path[PATH_MAX];
  ssize_t n = readlink(link.c_str(), path, sizeof path - 1);
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink(", link, ")"));
  path[n] = '\0';
  if (path[0] != '/' || absl::EndsWith(path, " (deleted)")) {
    return absl::FailedPreconditionError(
        absl::StrCat("directory fd ", dirfd, " has no path (", path, ")"));
  }
  struct stat want;
  if (fstat(dirfd, &want) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(fd=", dirfd, ")"));
  CB_ASSIGN_OR_RETURN(UniqueFd again,
                      TakeFd(open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC),
                             absl::StrCat("open(", path, ", O_PATH)")));
  struct stat got;
  if (fstat(again.get(), &got) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(", path, ")"));
  if (got.st_dev != want.st_dev || got.st_ino != want.st_ino) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is no longer the directory of fd ", dirfd));
  }
  CB_ASSIGN_OR_RETURN(
      UniqueFd tree,
      TakeFd(open_tree(again.get(), "",
                       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE),
             absl::StrCat("open_tree(", path, ", OPEN_TREE_CLONE)")));
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  if (!writable) attr.attr_set |= MOUNT_ATTR_RDONLY;
  if (mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount_setattr(", path, ")"));
  }
  // open_tree gives an O_PATH fd; the service wants to read the directory.
  return TakeFd(openat(tree.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
                absl::StrCat("openat(", path, ")"));
}

}  // namespace capbroker::sandbox
