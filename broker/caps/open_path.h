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

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::caps {

struct Found;  // path_walk.h

// How to open a file: the open(2) flags for an access, and what to do when
// the file is missing or present.
struct FileOpen {
  schema::Access access = schema::Access::READ;
  bool create = false;    // O_CREAT with `mode`
  // Empty the file; only with write or readWrite access. Never done by the
  // open itself (no O_TRUNC): OpenEffects::Complete does it.
  bool truncate = false;
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

// What an open for a grant does to the file system besides opening, held
// to the grant's record: a grant whose audit line is never written must
// leave no trace (see broker_loop.h). The open itself never empties a file
// (no O_TRUNC): Complete does, once the grant is on record. A file the
// open made (FileOpen::create) must exist for the open to give an fd: Undo
// removes it again if the grant never gets on record, by the very
// directory it was made in, and only while its name there still refers to
// it (in a directory others may write to, the name may have been replaced
// meanwhile, and their file is not the broker's to remove). Move-only.
class OpenEffects {
 public:
  OpenEffects() = default;
  OpenEffects(OpenEffects&&) = default;
  OpenEffects& operator=(OpenEffects&&) = default;

  // Whether there is anything to complete or undo.
  bool pending() const { return truncate_ || directory_.valid(); }
  // Whether the open made the file.
  bool created() const { return directory_.valid(); }
  // The file the open made is append-only now (an append-only grant):
  // unlink refuses such a file, so Undo clears the attribute first.
  void MadeAppendOnly() { append_only_ = true; }

  // The grant is on record: empties the file open at `fd` (borrowed, the
  // open's result) when truncate was asked. Then nothing is pending.
  absl::Status Complete(int fd);
  // The grant is not on record: removes the file the open made, if it
  // made one. Then nothing is pending. The name must still refer to the
  // file made (its device and inode, as the open found them): call it while
  // the open's fd is still open, so that no new file can have the inode.
  absl::Status Undo();

  // What the open `opened` (a walk's result, path_walk.h: the file, and
  // what it made, which this takes, with its identity) left to do for
  // `how`, at `path`. It cannot fail: nothing can come between the making
  // of a file and what removes it. For OpenFile and OpenBeneath, which give
  // it to their callers.
  static OpenEffects Of(const FileOpen& how, Found& opened, const std::string& path);

 private:
  std::string path_;  // for messages
  bool truncate_ = false;
  // A file the open made: the directory it was made in (O_PATH), its name
  // there and the file's identity.
  UniqueFd directory_;
  std::string name_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool append_only_ = false;

  // Clears the append-only attribute of the file made, found by its name
  // in `directory` and checked to be that very file.
  absl::Status ClearAppendOnly(int directory) const;
};

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
// OpenBeneath. `effects` (see OpenEffects), required with truncate, gets
// what the open left to complete or undo; with create, it may be left out
// by a caller that never undoes it.
absl::StatusOr<UniqueFd> OpenFile(absl::string_view path, const FileOpen& how,
                                  bool follow_symlinks,
                                  HardLinks hard_links = HardLinks::kUnprotected,
                                  OpenEffects* effects = nullptr);

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
// (kFailedPrecondition, naming its owner). `effects` as for OpenFile: its
// created() says whether the open made the file (with `how.create`, the
// open tries O_CREAT | O_EXCL first, so the kernel says so, race-free).
absl::StatusOr<UniqueFd> OpenBeneath(int dirfd, absl::string_view relative,
                                     const FileOpen& how,
                                     HardLinks hard_links = HardLinks::kUnprotected,
                                     OpenEffects* effects = nullptr);

}  // namespace capbroker::caps

#endif  // CAPBROKER_BROKER_CAPS_OPEN_PATH_H_
