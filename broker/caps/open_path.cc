#include "broker/caps/open_path.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/caps/path_walk.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/limits.h"

namespace capbroker::caps {
namespace {

// Where a capability's file is, and what may be opened there.
struct Target {
  Lookup lookup;
  bool allow_directory;
  // Refuse an existing regular file with more than one link (see
  // HardLinks).
  bool refuse_hard_links = false;
};

// Checks that the entry `st` (the walk checked its place: path_walk.h) is
// what `target` may open: a regular file, or a directory when allowed; of
// one link only when `target.refuse_hard_links`. kFailedPrecondition, not
// kPermissionDenied, for the links: the policy grants the file, and what
// fails is the host's setting, which the administrator changes.
absl::Status CheckFile(const struct stat& st, const Target& target) {
  const Lookup& lookup = target.lookup;
  bool ok = S_ISREG(st.st_mode) || (target.allow_directory && S_ISDIR(st.st_mode));
  if (!ok) {
    return absl::FailedPreconditionError(absl::StrCat(
        lookup.path, " is not a regular file", target.allow_directory ? " or directory" : ""));
  }
  if (target.refuse_hard_links && S_ISREG(st.st_mode) && st.st_nlink > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        lookup.what, " ", lookup.path, ": has ", st.st_nlink,
        " hard links, and fs.protected_hardlinks is 0 on this host (or could not be read), "
        "so anyone could have linked another's file here; set fs.protected_hardlinks=1 "
        "(the broker reads it when it starts)"));
  }
  return absl::OkStatus();
}

// Opens the inode `handle` (an O_PATH fd, borrowed) again with `flags`,
// through /proc/self/fd/N (see OpenChecked). O_NONBLOCK: a file lease
// (fcntl F_SETLEASE), which any owner of a file may take, makes every
// other open of the file wait until its holder lets go, up to
// fs.lease-break-time (45 s by default) if the holder ignores the kernel's
// SIGIO; the broker's only thread would wait with it, for every client.
// With O_NONBLOCK the kernel starts the lease break and fails the open with
// EWOULDBLOCK at once. O_NONBLOCK is then cleared: the fd a client gets has
// the status flags it asked for.
absl::StatusOr<UniqueFd> OpenInode(int handle, int flags, const Lookup& target) {
  std::string self = absl::StrCat("/proc/self/fd/", handle);
  int fd = RetryEintr(
      [&] { return open(self.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC); });
  if (fd < 0 && errno == EWOULDBLOCK) {
    return absl::UnavailableError(absl::StrCat(
        target.what, " ", target.path, ": the file is leased by another process (fcntl "
        "F_SETLEASE), which the kernel has now asked to let go of it; try again in a moment"));
  }
  if (fd < 0) {
    return OpenError(ErrnoStatus(errno, absl::StrCat(target.what, " ", target.path)));
  }
  UniqueFd opened(fd);
  // F_SETFL sets the status flags (O_APPEND, O_NONBLOCK...) and ignores the
  // access mode and creation flags among `flags`.
  if (fcntl(opened.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl(", target.path, ", F_SETFL)"));
  }
  return opened;
}

// Opens `target` with `flags` (an access, O_CREAT) and `mode`,
// never running the open of anything but a regular file (or directory): a
// FIFO would block, and a device's open acts (a watchdog starts counting).
// The walk (path_walk.h) makes a missing file with O_CREAT | O_EXCL (a new
// regular file, which nobody else can hold a lease on yet: `created`), or
// gives its own O_PATH fd of what is there, which opens nothing and breaks
// no lease; then the checks (CheckFile), then the real open through
// /proc/self/fd/N: the very inode the walk checked, whatever the path names
// by then. The result's `fd` is the open file.
absl::StatusOr<Found> OpenChecked(const Target& target, int flags, mode_t mode) {
  CB_ASSIGN_OR_RETURN(Found found, Walk(target.lookup, flags & O_CREAT ? flags : 0, mode));
  if (found.created) return found;
  CB_RETURN_IF_ERROR(CheckFile(found.st, target));
  CB_ASSIGN_OR_RETURN(found.fd, OpenInode(found.fd.get(), flags & ~O_CREAT, target.lookup));
  return found;
}

// Holds an append-only grant on the regular file `fd` (borrowed; see
// FileOpen::append_only), opened at `path`: the file must carry
// FS_APPEND_FL; one that this open made (`effects`) gets it. Says why when
// it cannot hold; RequireAppendOnly undoes what the open made.
absl::Status HoldAppendOnly(int fd, OpenEffects& effects, const std::string& path) {
  int attributes = 0;  // FS_IOC_GETFLAGS reads an int, whatever its name says
  if (ioctl(fd, FS_IOC_GETFLAGS, &attributes) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": its file system cannot make files append-only (", std::strerror(errno),
        "), so an append grant cannot hold; grant write, or keep the file on a file "
        "system that can (ext4, xfs, btrfs, tmpfs)"));
  }
  if (attributes & FS_APPEND_FL) return absl::OkStatus();
  if (effects.created()) {
    attributes |= FS_APPEND_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &attributes) == 0) {
      effects.MadeAppendOnly();
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot make the new file ", path, " append-only (", std::strerror(errno),
        "; that takes CAP_LINUX_IMMUTABLE, which a broker run as root has)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      path, " is not append-only, so an append grant cannot hold: whoever holds an "
      "O_APPEND fd can turn O_APPEND off or truncate the file. Make it append-only "
      "(chattr +a ", path, "), or grant write"));
}

// HoldAppendOnly, and when the grant cannot hold, a new file the open made
// is removed again (OpenEffects::Undo), whichever check refused it (its
// file system has no attributes, or the broker may not set them): left
// there, empty and not append-only, it would make the next request's error
// "not append-only ... chattr +a", which cannot be mended on such a file
// system or by a broker without CAP_LINUX_IMMUTABLE, instead of this one's.
absl::Status RequireAppendOnly(int fd, OpenEffects& effects, const std::string& path) {
  absl::Status held = HoldAppendOnly(fd, effects, path);
  if (held.ok()) return held;
  if (absl::Status removed = effects.Undo(); !removed.ok()) {  // nothing made: nothing done
    return absl::Status(held.code(),
                        absl::StrCat(held.message(),
                                     "; the empty file it made could not be removed again (",
                                     removed.message(), "): remove it"));
  }
  return held;
}

// O_TRUNC empties the file whatever the access mode: with O_RDONLY (Linux
// does truncate) and with O_APPEND alike. Only write and readWrite may
// overwrite, so only they may truncate.
absl::Status CheckTruncate(const FileOpen& how) {
  if (!how.truncate || how.access == schema::Access::WRITE ||
      how.access == schema::Access::READ_WRITE) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("truncate needs write or readWrite access");
}

// The open of `target` with `how` (its access, create and mode) for
// OpenFile and OpenBeneath: the checked open, then what it left to do
// (OpenEffects), then the append-only rule. `effects` may be null but
// with truncate.
absl::StatusOr<UniqueFd> OpenForGrant(const Target& target, const FileOpen& how,
                                      OpenEffects* effects) {
  CB_RETURN_IF_ERROR(CheckTruncate(how));
  if (how.truncate && effects == nullptr) {
    return absl::InternalError("truncate is done by OpenEffects::Complete, and none was given");
  }
  CB_ASSIGN_OR_RETURN(int flags, AccessFlags(how.access));
  if (how.create) flags |= O_CREAT;
  CB_ASSIGN_OR_RETURN(Found opened, OpenChecked(target, flags, how.mode));
  OpenEffects left = OpenEffects::Of(how, opened, target.lookup.path);
  if (how.append_only) {
    CB_RETURN_IF_ERROR(RequireAppendOnly(opened.fd.get(), left, target.lookup.path));
  }
  if (effects != nullptr) *effects = std::move(left);
  return std::move(opened.fd);
}

}  // namespace

OpenEffects OpenEffects::Of(const FileOpen& how, Found& opened, const std::string& path) {
  OpenEffects effects;
  effects.path_ = path;
  effects.truncate_ = how.truncate;
  if (opened.created) {
    effects.directory_ = std::move(opened.directory);
    effects.name_ = std::move(opened.name);
    effects.dev_ = opened.st.st_dev;
    effects.ino_ = opened.st.st_ino;
  }
  return effects;
}

absl::Status OpenEffects::Complete(int fd) {
  const bool truncate = std::exchange(truncate_, false);
  directory_.reset();
  if (truncate && RetryEintr([&] { return ftruncate(fd, 0); }) != 0) {
    return ErrnoStatus(errno, absl::StrCat("ftruncate ", path_));
  }
  return absl::OkStatus();
}

absl::Status OpenEffects::ClearAppendOnly(int directory) const {
  UniqueFd file(RetryEintr([&] {
    return openat(directory, name_.c_str(),
                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  }));
  if (!file.valid()) return ErrnoStatus(errno, absl::StrCat("open ", path_));
  struct stat st;
  if (fstat(file.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path_));
  if (st.st_dev != dev_ || st.st_ino != ino_) {
    return absl::FailedPreconditionError(absl::StrCat(path_, " names another file by now"));
  }
  int attributes = 0;  // FS_IOC_GETFLAGS reads an int, whatever its name says
  if (ioctl(file.get(), FS_IOC_GETFLAGS, &attributes) != 0) {
    return ErrnoStatus(errno, absl::StrCat("read the attributes of ", path_));
  }
  attributes &= ~FS_APPEND_FL;
  if (ioctl(file.get(), FS_IOC_SETFLAGS, &attributes) != 0) {
    return ErrnoStatus(errno, absl::StrCat("make ", path_, " no longer append-only"));
  }
  return absl::OkStatus();
}

absl::Status OpenEffects::Undo() {
  truncate_ = false;
  if (!directory_.valid()) return absl::OkStatus();
  const UniqueFd directory = std::move(directory_);
  struct stat now;
  if (fstatat(directory.get(), name_.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstatat ", path_));
  }
  if (now.st_dev != dev_ || now.st_ino != ino_) {
    return absl::FailedPreconditionError(absl::StrCat(path_, " names another file by now"));
  }
  if (append_only_) CB_RETURN_IF_ERROR(ClearAppendOnly(directory.get()));
  if (unlinkat(directory.get(), name_.c_str(), 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("unlinkat ", path_));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> AccessFlags(schema::Access access) {
  switch (access) {
    case schema::Access::READ:
      return O_RDONLY;
    case schema::Access::WRITE:
      return O_WRONLY;
    case schema::Access::READ_WRITE:
      return O_RDWR;
    case schema::Access::APPEND:
      return O_WRONLY | O_APPEND;
    case schema::Access::UNSPECIFIED:
      break;
  }
  return absl::InvalidArgumentError("no access given");
}

absl::StatusOr<UniqueFd> OpenFile(absl::string_view path, const FileOpen& how,
                                  bool follow_symlinks, HardLinks hard_links,
                                  OpenEffects* effects) {
  // The policy's path is a name in a directory, which others may be able
  // to write: it may be a link made there to another's file (see HardLinks).
  const Target target{{AT_FDCWD, std::string(path), false, follow_symlinks, "open"},
                      false, hard_links == HardLinks::kUnprotected};
  return OpenForGrant(target, how, effects);
}

absl::StatusOr<UniqueFd> OpenDirectory(absl::string_view path,
                                       bool follow_symlinks) {
  const Lookup lookup{AT_FDCWD, std::string(path), false, follow_symlinks, "open directory"};
  CB_ASSIGN_OR_RETURN(Found found, Walk(lookup, 0, 0));
  if (!S_ISDIR(found.st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a directory"));
  }
  return OpenInode(found.fd.get(), O_RDONLY | O_DIRECTORY, lookup);
}

HardLinks ReadHardLinkProtection(const char* path) {
  UniqueFd fd(RetryEintr([&] { return open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY); }));
  if (!fd) return HardLinks::kUnprotected;
  char text[8];
  ssize_t n = RetryEintr([&] { return read(fd.get(), text, sizeof(text)); });
  if (n <= 0) return HardLinks::kUnprotected;
  return absl::StripTrailingAsciiWhitespace(absl::string_view(text, static_cast<size_t>(n))) == "1"
             ? HardLinks::kProtected
             : HardLinks::kUnprotected;
}

absl::StatusOr<UniqueFd> OpenBeneath(int dirfd, absl::string_view relative,
                                     const FileOpen& how, HardLinks hard_links,
                                     OpenEffects* effects) {
  if (relative.empty()) {
    return absl::InvalidArgumentError("path beneath a directory is empty");
  }
  if (relative.size() > wire::kMaxPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path beneath a directory is ", relative.size(), " bytes; at most ",
        wire::kMaxPathBytes));
  }
  if (relative.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("path beneath a directory contains NUL");
  }
  if (relative.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "path beneath a directory must be relative: ", relative));
  }
  // Beneath (RESOLVE_NO_XDEV among it): beneath the directory the administrator granted, a
  // mount is someone else's doing (a user's FUSE mount, say, whose server
  // could stall the broker, or a tree the grant never meant).
  const Target target{{dirfd, std::string(relative), true, false, "open beneath:"},
                      how.access == schema::Access::READ && !how.create,
                      hard_links == HardLinks::kUnprotected};
  FileOpen masked = how;
  masked.mode &= 0777;
  return OpenForGrant(target, masked, effects);
}

}  // namespace capbroker::caps
