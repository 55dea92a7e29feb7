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
#include "absl/strings/string_view.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::sandbox {
namespace {

// The detached mount of the directory `dirfd` (borrowed) refers to, with
// the mounts beneath it, and its flags set: an O_PATH fd.
absl::StatusOr<UniqueFd> CloneTree(int dirfd, bool writable, absl::string_view what) {
  CB_ASSIGN_OR_RETURN(
      UniqueFd tree,
      TakeFd(open_tree(dirfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE),
             absl::StrCat("open_tree(", what, ", OPEN_TREE_CLONE)")));
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  if (!writable) attr.attr_set |= MOUNT_ATTR_RDONLY;
  if (mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return ErrnoStatus(errno, absl::StrCat("mount_setattr(", what, ")"));
  }
  return tree;
}

}  // namespace

absl::StatusOr<std::optional<UniqueFd>> CloneDirectoryTree(int fd, bool writable) {
  // The file type of an inode never changes: the cached one is right, and
  // asking for it sends no request to a FUSE or NFS server.
  struct statx stx = {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &stx) != 0) {
    return ErrnoStatus(errno, absl::StrCat("statx(fd=", fd, ")"));
  }
  if (!S_ISDIR(stx.stx_mode)) return std::nullopt;
  CB_ASSIGN_OR_RETURN(UniqueFd tree, CloneTree(fd, writable, absl::StrCat("fd=", fd)));
  return std::optional<UniqueFd>(std::move(tree));
}

absl::StatusOr<UniqueFd> OpenDetachedTree(int tree) {
  // open_tree gives an O_PATH fd; the service wants to read the directory.
  return TakeFd(openat(tree, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
                absl::StrCat("openat(detached tree fd=", tree, ", O_RDONLY)"));
}

absl::StatusOr<UniqueFd> DetachDirectory(int dirfd, bool writable) {
  // Not moved out of the StatusOr: g++ 12 then warns, wrongly, that the
  // string may be used uninitialized (-Wmaybe-uninitialized).
  absl::StatusOr<std::string> fd_path = FdPath(dirfd);
  if (!fd_path.ok()) return fd_path.status();
  const std::string& path = *fd_path;
  if (!absl::StartsWith(path, "/") || absl::EndsWith(path, " (deleted)")) {
    return absl::FailedPreconditionError(
        absl::StrCat("directory fd ", dirfd, " has no path (", path, ")"));
  }
  struct stat want;
  if (fstat(dirfd, &want) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(fd=", dirfd, ")"));
  CB_ASSIGN_OR_RETURN(UniqueFd again,
                      TakeFd(open(path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC),
                             absl::StrCat("open(", path, ", O_PATH)")));
  struct stat got;
  if (fstat(again.get(), &got) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(", path, ")"));
  if (got.st_dev != want.st_dev || got.st_ino != want.st_ino) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is no longer the directory of fd ", dirfd));
  }
  CB_ASSIGN_OR_RETURN(UniqueFd tree, CloneTree(again.get(), writable, path));
  return OpenDetachedTree(tree.get());
}

}  // namespace capbroker::sandbox
