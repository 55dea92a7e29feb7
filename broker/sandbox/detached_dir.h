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
// Runs in the child, in its new mount namespace with CAP_SYS_ADMIN over it.
// open_tree only clones mounts of the caller's mount namespace, so the
// directory is first found again by path in the child's copy of the host's
// tree, and the inode is checked to be the same one.
#ifndef CAPBROKER_BROKER_SANDBOX_DETACHED_DIR_H_
#define CAPBROKER_BROKER_SANDBOX_DETACHED_DIR_H_

#include "absl/status/statusor.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {

// A new fd (O_RDONLY | O_DIRECTORY | O_CLOEXEC) on the same directory as
// `dirfd` (borrowed), at the top of a detached mount of it (with the mounts
// beneath it), with nosuid, nodev and noexec, and read-only unless
// `writable`. kFailedPrecondition when the directory cannot be found again by
// its path (deleted, moved, or not reachable in this mount namespace).
absl::StatusOr<UniqueFd> DetachDirectory(int dirfd, bool writable);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_DETACHED_DIR_H_
