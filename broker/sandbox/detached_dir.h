// Confining a directory fd the service receives to that directory.
//
// A directory fd the broker opened refers to a mount of the broker's own
// mount namespace. Through it, "..", or a path such as
// /proc/self/fd/N/../../run/x.sock, walks up into the host's filesystem,
// beyond the service's minimal root: Landlock then stops opening files there,
// but not stat(2), nor connect(2) to a pathname unix socket (Landlock ABI 9).
// The fix is a detached bind mount of the directory alone (open_tree with
// OPEN_TREE_CLONE): at the top of a mount that has no parent, ".." stays
// where it is, as at the root of a chroot.
//
// open_tree clones only mounts of the caller's mount namespace, and only
// with CAP_SYS_ADMIN over it. A broker that has that (root) clones the
// directory before the clone3, from its own fd, without any lookup by
// path: the path may lead through directories the service's sandbox could
// not search (another user's 0700 directory: in the child's user
// namespace, root has no DAC override over unmapped users' files). The
// child then only opens the clone. A broker that cannot (not root) leaves
// it to the child, which has CAP_SYS_ADMIN over its new mount namespace:
// the child finds the directory again by path in its copy of the host's
// tree and checks that the inode is the same one.
#ifndef CAPBROKER_BROKER_SANDBOX_DETACHED_DIR_H_
#define CAPBROKER_BROKER_SANDBOX_DETACHED_DIR_H_

#include <optional>

#include "absl/status/statusor.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {

// In the broker, before the clone: an O_PATH fd (close-on-exec) on the top
// of a detached mount of the directory `fd` (borrowed) refers to, with the
// mounts beneath it, nosuid, nodev and noexec, and read-only unless
// `writable`; nullopt when `fd` is no directory. Touches no file system (the
// type comes from the cached inode, statx AT_STATX_DONT_SYNC; open_tree
// makes no lookup), so that a directory on a hung NFS or FUSE mount stalls
// only the child that opens it (OpenDetachedTree). An error (EPERM for a
// broker without CAP_SYS_ADMIN over its mount namespace) leaves the
// directory to DetachDirectory in the child.
absl::StatusOr<std::optional<UniqueFd>> CloneDirectoryTree(int fd, bool writable);

// In the child: the directory at the top of `tree` (a CloneDirectoryTree
// fd, borrowed) opened for reading (O_RDONLY | O_DIRECTORY | O_CLOEXEC).
absl::StatusOr<UniqueFd> OpenDetachedTree(int tree);

// In the child, in its new mount namespace with CAP_SYS_ADMIN over it: the
// same as CloneDirectoryTree then OpenDetachedTree, for a directory fd
// `dirfd` (borrowed) the broker could not clone, found again by its path.
// kFailedPrecondition when it cannot be found again (deleted, moved, or not
// reachable in this mount namespace), kPermissionDenied when a directory on
// its path may not be searched.
absl::StatusOr<UniqueFd> DetachDirectory(int dirfd, bool writable);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_DETACHED_DIR_H_
