// Opening the filesystem objects that capabilities name.
//
// Every open goes through openat2(2) so that symlinks are refused where the
// policy or the protocol says so, for every component of the path and not
// only the last one (O_NOFOLLOW covers the last one only). A file is first
// resolved with O_PATH, which opens nothing, its type checked, and only then
// the very inode opened (through /proc/self/fd): a FIFO placed at a policy
// path cannot block the broker, nor a device's open act on the device.
//
// The path is looked up by the broker itself, one name at a time
// (path_walk.h): any entry on it (file, directory, symlink followed) that
// another user may have planted in a sticky directory that others may
// write to is refused, with or without create (see sticky_directory.h).
//
// Error codes: kPermissionDenied only for what the broker's own rules refuse
// (a symlink, an escape from a directory), which a client is told as a
// denial. A symlink loop (ELOOP where symlinks are followed) is
// kFailedPrecondition. When the kernel refuses the broker's open itself (EACCES, EPERM:
// file modes with a broker not run as root, root squashed on NFS, an
// immutable file), the error is kFailedPrecondition, and its message says
// that the broker could not open the path, and why. A file another process
// holds a lease on (fcntl F_SETLEASE) is kUnavailable at once, never waited
// for: the broker's one thread serves every client (open_path.cc,
// OpenInode).
#ifndef CAPBROKER_BROKER_CAPS_OPEN_PATH_H_
#define CAPBROKER_BROKER_CAPS_OPEN_PATH_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::caps {

// How to open a file: the open(2) flags for an access, and what to do when
// the file is missing or present.
struct FileOpen {
  schema::Access access = schema::Access::READ;
  bool create = false;    // O_CREAT with `mode`
  bool truncate = false;  // O_TRUNC; only with write or readWrite access
  mode_t mode = 0600;
  // The grant allows appending and nothing more. O_APPEND alone does not
  // hold that: the holder of the fd can turn O_APPEND off (fcntl F_SETFL)
  // or truncate the file (ftruncate). Only the file's append-only attribute
  // (FS_APPEND_FL, `chattr +a`) holds it, for every fd and every holder. So
  // a file this open creates is made append-only (which takes
  // CAP_LINUX_IMMUTABLE: a broker run as root has it), and an existing file
  // without the attribute is refused (kFailedPrecondition, saying so).
  bool append_only = false;
};

// The O_ACCMODE and O_APPEND flags for `access`. kInvalidArgument for
// `unspecified` (resolve it against the grant first).
absl::StatusOr<int> AccessFlags(schema::Access access);

// Whether the kernel keeps users from hard-linking files they could not
// open themselves (the sysctl fs.protected_hardlinks). No path resolution
// can see a hard link: without that protection, a user who may write in a
// granted directory can link any file of the same file system into it
// (`ln /etc/shadow dir/x`), and one who may write in the directory of a file
// capability can replace the file with such a link (`rm inbox; ln
// /etc/shadow inbox`), and have the broker open it.
enum class HardLinks {
  kProtected,    // fs.protected_hardlinks = 1 (Debian's and systemd's)
  kUnprotected,  // 0 (the kernel's own default), or not known
};

inline constexpr char kProtectedHardlinksPath[] = "/proc/sys/fs/protected_hardlinks";

// Reads the sysctl file `path`: kProtected when it says 1, kUnprotected for
// anything else, including a file that cannot be read (fail closed). Read it
// once, when the broker starts: it is not a question for every request.
HardLinks ReadHardLinkProtection(const char* path = kProtectedHardlinksPath);

// Opens the regular file at the absolute `path`. Without `follow_symlinks`,
// any symlink on the path fails the open (kPermissionDenied, saying so);
// with it, a symlink another user could have placed or could re-point
// (util::SymlinkRule, path_walk.h) does (kFailedPrecondition).
// kFailedPrecondition when `path` is not a regular file; kInvalidArgument
// for truncate with read or append access. With `hard_links` kUnprotected
// (the default: fail closed), an existing file with more than one link is
// refused before it is opened, as by OpenBeneath. So is another user's file
// in a sticky directory others may write to (kFailedPrecondition; see
// sticky_directory.h), or a directory or symlink on its way, as by
// OpenBeneath.
absl::StatusOr<UniqueFd> OpenFile(absl::string_view path, const FileOpen& how,
                                  bool follow_symlinks,
                                  HardLinks hard_links = HardLinks::kUnprotected);

// Opens the directory at the absolute `path` (O_RDONLY | O_DIRECTORY),
// looked up as OpenFile's (kFailedPrecondition for a planted entry, or for
// what is not a directory).
absl::StatusOr<UniqueFd> OpenDirectory(absl::string_view path,
                                       bool follow_symlinks);

// Opens `relative` beneath the directory `dirfd` (borrowed) with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: no absolute
// path, no `..` above `dirfd`, no symlink anywhere. The result is a regular
// file, or a directory when `how.access` is read and nothing is created.
// kPermissionDenied for an escape or a symlink, kNotFound for a missing
// file, kInvalidArgument for a malformed path or for truncate with read or
// append access. With `hard_links` kUnprotected (the default: fail closed),
// an existing regular file with more than one link is refused before it is
// opened (kFailedPrecondition, naming the sysctl): one of its names may be
// a link someone made to another user's file; so is a regular file of
// another user in a sticky directory that others may write to
// (kFailedPrecondition, naming its owner). When `created` is given, a
// successful open sets it to whether it made the file: with `how.create`,
// the open tries O_CREAT | O_EXCL first, so the kernel says so, race-free.
absl::StatusOr<UniqueFd> OpenBeneath(int dirfd, absl::string_view relative,
                                     const FileOpen& how,
                                     HardLinks hard_links = HardLinks::kUnprotected,
                                     bool* created = nullptr);

}  // namespace capbroker::caps

#endif  // CAPBROKER_BROKER_CAPS_OPEN_PATH_H_
