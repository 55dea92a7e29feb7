// The broker's own path lookup for the files and directories it opens for
// capabilities: one component at a time, by fd, with the sticky-directory
// rule (sticky_directory.h) checked at every step.
//
// Each step is an openat2 of one name in the directory the walk holds
// (O_PATH | O_NOFOLLOW, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, plus
// RESOLVE_BENEATH | RESOLVE_NO_XDEV beneath a directory grant), then an
// fstat of what it found. When the directory is sticky and others may write
// to it, the entry (file, directory or symlink) must be the broker's own or
// the directory owner's. The walk's result is the walk's own O_PATH fd: what
// was checked is what the caller opens (through /proc/self/fd), whatever
// the names say by then; nothing can be swapped in between.
//
// '.' is skipped. '..' returns to the directory the walk came from (a stack
// of the fds walked), never above the start of a walk beneath a directory
// (kPermissionDenied, as RESOLVE_BENEATH refuses it), and at "/" stays
// there. The stack holds only the fds that a '..' still to come can reach:
// the others are closed as the walk goes on.
//
// Symlinks, where followed, are resolved by the walk too: the link itself is
// an entry under the same rule (the kernel's fs.protected_symlinks rule,
// applied whatever the sysctl says), and is followed only where no user but
// root or the broker's could have put it or could re-point it
// (util::SymlinkRule, the rule for the broker's own configured paths): the
// link owned by root or the broker's euid, in a directory that neither group
// nor others may write, reached through directories that only root or the
// broker can change. Any other link is refused (kFailedPrecondition, naming
// it, its owner and why): a followed path through another user's link
// (/home/alice/report -> /etc/shadow) would hand out whatever root can open.
// Then its target is read (readlinkat)
// and its components put in front of the rest (an absolute target starts
// again at "/"), at most kMaxSymlinks (40, sdk/base/syscall.h) links per
// lookup (kFailedPrecondition after, as the kernel's ELOOP). A link on /proc
// (a magic link: /proc/self/fd/N, /proc/PID/root) is refused
// (kPermissionDenied): its text does not say what it leads to.
#ifndef CAPBROKER_BROKER_CAPS_PATH_WALK_H_
#define CAPBROKER_BROKER_CAPS_PATH_WALK_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::caps {

// What to look up.
struct Lookup {
  int dirfd;         // borrowed; AT_FDCWD for an absolute path
  std::string path;  // absolute, or relative to `dirfd`
  bool beneath;      // never leave `dirfd` (by '..' or into another mount)
  bool follow_symlinks;
  absl::string_view what;  // for messages: "open", "open beneath:"
};

// What a walk found.
struct Found {
  // The entry, O_PATH; or, when `created`, the new file, opened with the
  // flags given to Walk.
  UniqueFd fd;
  struct stat st = {};  // fstat of the entry, or of the file made
  bool created = false;
  // When `created`: the directory it was made in (O_PATH) and its name
  // there, to remove it again by that very directory.
  UniqueFd directory;
  std::string name;
};

// Walks `lookup` (see above). With O_CREAT in `create_flags`, a last name
// not there yet is made, in the directory the walk holds, with
// `create_flags | O_EXCL` and `mode`; one that is there is looked up as
// any other. kPermissionDenied for a symlink where none is followed or for
// a way out of `dirfd` beneath it, kNotFound for a missing name,
// kFailedPrecondition for a planted entry or too many links, the kernel's
// error for the rest (OpenError).
absl::StatusOr<Found> Walk(const Lookup& lookup, int create_flags, mode_t mode);

// An open by the broker itself that failed (`status`, from the errno).
// EACCES and EPERM there (kPermissionDenied) are the file system's answer to
// the broker (file modes with a broker not run as root, root squashed on
// NFS, an immutable file, a security module), not a policy decision: they
// become kFailedPrecondition, saying so, since kPermissionDenied tells a
// client that the policy refused it.
absl::Status OpenError(absl::Status status);

}  // namespace capbroker::caps

#endif  // CAPBROKER_BROKER_CAPS_PATH_WALK_H_
