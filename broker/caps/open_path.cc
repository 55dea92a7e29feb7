#include "broker/caps/open_path.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "broker/caps/sticky_directory.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/limits.h"

namespace capbroker::caps {
namespace {

// An open by the broker itself that failed (`status`, from the errno).
// EACCES and EPERM there (kPermissionDenied) are the file system's answer to
// the broker (file modes with a broker not run as root, root squashed on
// NFS, an immutable file, a security module), not a policy decision: they
// become kFailedPrecondition, saying so, since kPermissionDenied tells a
// client that the policy refused it.
absl::Status OpenError(absl::Status status) {
  if (status.code() != absl::StatusCode::kPermissionDenied) return status;
  return absl::FailedPreconditionError(absl::StrCat(
      status.message(), ": the broker itself could not open the path (its permissions "
      "or attributes, or its file system, keep the broker out; the policy grants it)"));
}

// openat2 can fail with EAGAIN when a rename races with RESOLVE_BENEATH or
// RESOLVE_NO_SYMLINKS resolution; the kernel asks callers to retry.
constexpr int kOpenat2Attempts = 8;

absl::StatusOr<UniqueFd> Openat2(int dirfd, const std::string& path,
                                 uint64_t flags, mode_t mode, uint64_t resolve,
                                 absl::string_view what) {
  open_how how{};
  // openat2 refuses O_PATH with any flag but a few (O_NOCTTY included).
  how.flags = flags | O_CLOEXEC | ((flags & O_PATH) ? 0 : O_NOCTTY);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = resolve;
  long fd = -1;
  for (int attempt = 0; attempt < kOpenat2Attempts; ++attempt) {
    fd = RetryEintr([&] {
      return syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
    });
    if (fd >= 0 || errno != EAGAIN) break;
  }
  if (fd >= 0) return UniqueFd(static_cast<int>(fd));
  int err = errno;
  switch (err) {
    case ELOOP:
      // With RESOLVE_NO_SYMLINKS, any symlink on the way: the broker's rule.
      // Without it, the kernel's own limit: a loop, or more than 40 links.
      if (resolve & RESOLVE_NO_SYMLINKS) {
        return absl::PermissionDeniedError(absl::StrCat(
            what, " ", path, ": the path contains a symlink, which is refused"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          what, " ", path, ": too many levels of symbolic links (a loop, or more than 40 "
          "links on the way); fix the links on the path"));
    case EXDEV:
      return absl::PermissionDeniedError(absl::StrCat(
          what, " ", path, ": the path leaves its directory (by '..', or into "
          "another mount)"));
    case ENOENT:
      return absl::NotFoundError(absl::StrCat(what, " ", path,
                                              ": no such file or directory"));
    default:
      return OpenError(ErrnoStatus(err, absl::StrCat(what, " ", path)));
  }
}

// Where a capability's file is: `path` resolved from `dirfd` with `resolve`.
struct Target {
  int dirfd;
  std::string path;
  uint64_t resolve;
  absl::string_view what;  // for messages: "open", "open beneath:"
  bool allow_directory;
  // Refuse an existing regular file with more than one link (see
  // HardLinks).
  bool refuse_hard_links = false;
};

// `path` split at its last '/': the directory it names ("." when it has no
// '/', "/" for one at the start) and the name in it.
struct PathParts {
  std::string parent;
  std::string name;
};

PathParts SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// The directory the regular file `fd` (O_PATH is enough; `file` is its
// fstat) was found in by `target`'s open, fstat'ed, once it is seen to
// hold the file under that name still. Without symlinks on the way, the
// directory is the path's own parent, resolved as the file was. Where
// symlinks are followed, the last name may be a link into another
// directory: it is then the directory the kernel names for the file
// (FdPath: the name the open went through), resolved with no symlink.
// kUnavailable when the name no longer leads to `file` (renamed or
// replaced meanwhile): the check would be of another file.
absl::StatusOr<struct stat> FoundIn(int fd, const struct stat& file, const Target& target) {
  int dirfd = target.dirfd;
  std::string path = target.path;
  uint64_t resolve = target.resolve;
  if (!(resolve & RESOLVE_NO_SYMLINKS)) {
    CB_ASSIGN_OR_RETURN(path, FdPath(fd));
    if (path.empty() || path.front() != '/') {
      return absl::FailedPreconditionError(absl::StrCat(
          target.what, " ", target.path, ": cannot tell which directory holds it (the "
          "kernel names it '", path, "')"));
    }
    dirfd = AT_FDCWD;
    resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  }
  const PathParts parts = SplitPath(path);
  CB_ASSIGN_OR_RETURN(UniqueFd dir, Openat2(dirfd, parts.parent, O_PATH | O_DIRECTORY, 0,
                                            resolve, target.what));
  struct stat directory;
  if (fstat(dir.get(), &directory) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat ", parts.parent));
  }
  struct stat named;
  if (parts.name.empty() ||
      fstatat(dir.get(), parts.name.c_str(), &named, AT_SYMLINK_NOFOLLOW) != 0 ||
      named.st_dev != file.st_dev || named.st_ino != file.st_ino) {
    return absl::UnavailableError(absl::StrCat(
        target.what, " ", target.path, ": the file was renamed or replaced while the broker "
        "opened it; try again"));
  }
  return directory;
}

// Checks that the file `fd` (O_PATH is enough) is what `target` may open: a
// regular file, or a directory when allowed; of one link only when
// `target.refuse_hard_links`; not planted by another user in a sticky
// directory (sticky_directory.h). kFailedPrecondition, not
// kPermissionDenied, for the links and the owner: the policy grants the
// file, and what fails is the host's setting or the file's place, which
// the administrator changes.
absl::Status CheckFile(int fd, const Target& target) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", target.path));
  bool ok = S_ISREG(st.st_mode) || (target.allow_directory && S_ISDIR(st.st_mode));
  if (!ok) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.path, " is not a regular file", target.allow_directory ? " or directory" : ""));
  }
  if (S_ISREG(st.st_mode)) {
    CB_ASSIGN_OR_RETURN(struct stat directory, FoundIn(fd, st, target));
    CB_RETURN_IF_ERROR(CheckStickyDirectoryOwner(directory, st, geteuid(),
                                                 absl::StrCat(target.what, " ", target.path)));
  }
  if (target.refuse_hard_links && S_ISREG(st.st_mode) && st.st_nlink > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.what, " ", target.path, ": has ", st.st_nlink,
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
absl::StatusOr<UniqueFd> OpenInode(int handle, int flags, const Target& target) {
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

// Opens `target` with `flags` (an access, O_CREAT, O_TRUNC) and `mode`,
// never running the open of anything but a regular file (or directory): a
// FIFO would block, and a device's open acts (a watchdog starts counting).
// With O_CREAT, O_EXCL first: what that makes is a new regular file, and
// `created` says so (nobody else can hold a lease on it yet). Otherwise (or
// when the file exists) an O_PATH open, which opens nothing and breaks no
// lease, then the checks (CheckFile), then the real open through
// /proc/self/fd/N: the very inode checked, whatever the path names by then.
absl::StatusOr<UniqueFd> OpenChecked(const Target& target, int flags, mode_t mode,
                                     bool& created) {
  created = false;
  for (int attempt = 0; attempt < kOpenat2Attempts; ++attempt) {
    if (flags & O_CREAT) {
      absl::StatusOr<UniqueFd> fd =
          Openat2(target.dirfd, target.path, flags | O_EXCL, mode, target.resolve, target.what);
      if (fd.ok()) created = true;
      if (fd.status().code() != absl::StatusCode::kAlreadyExists) return fd;
    }
    absl::StatusOr<UniqueFd> handle =
        Openat2(target.dirfd, target.path, O_PATH, 0, target.resolve, target.what);
    if (!handle.ok()) {
      // Removed between the two opens: create it after all.
      if ((flags & O_CREAT) && handle.status().code() == absl::StatusCode::kNotFound) continue;
      return handle.status();
    }
    CB_RETURN_IF_ERROR(CheckFile(handle->get(), target));
    return OpenInode(handle->get(), flags & ~O_CREAT, target);
  }
  // O_EXCL sees a name, O_PATH finds nothing behind it, every time.
  return absl::FailedPreconditionError(absl::StrCat(
      target.what, " ", target.path,
      ": the name exists but names nothing that can be opened (a dangling symlink?)"));
}

// Removes the file `fd` (borrowed) that this open created at `target`,
// which cannot be handed out. The name is looked up again in the directory
// the open resolved, opened anew with the same resolve flags, and removed
// only while it still refers to that very inode: in a directory others may
// write to, the name may have been replaced meanwhile, and their file is
// not the broker's to remove.
absl::Status RemoveCreated(int fd, const Target& target) {
  const auto [parent, name] = SplitPath(target.path);
  if (name.empty() || name == "." || name == "..") {
    return absl::InternalError(absl::StrCat("no file name in ", target.path));
  }
  CB_ASSIGN_OR_RETURN(UniqueFd dir, Openat2(target.dirfd, parent, O_PATH | O_DIRECTORY, 0,
                                            target.resolve, target.what));
  struct stat made;
  struct stat now;
  if (fstat(fd, &made) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", target.path));
  if (fstatat(dir.get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstatat ", target.path));
  }
  if (now.st_dev != made.st_dev || now.st_ino != made.st_ino) {
    return absl::FailedPreconditionError(
        absl::StrCat(target.path, " names another file by now"));
  }
  if (unlinkat(dir.get(), name.c_str(), 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("unlinkat ", target.path));
  }
  return absl::OkStatus();
}

// Holds an append-only grant on the regular file `fd` (see FileOpen::
// append_only), opened at `target`: the file must carry FS_APPEND_FL; one
// that this open `created` gets it. A new file that cannot get it is
// removed again (RemoveCreated): left there, empty and not append-only, it
// would make the next request's error "not append-only ... chattr +a",
// which a broker without CAP_LINUX_IMMUTABLE cannot mend, instead of this
// one's.
absl::Status RequireAppendOnly(int fd, bool created, const Target& target) {
  const std::string& path = target.path;
  int attributes = 0;  // FS_IOC_GETFLAGS reads an int, whatever its name says
  if (ioctl(fd, FS_IOC_GETFLAGS, &attributes) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": its file system cannot make files append-only (", std::strerror(errno),
        "), so an append grant cannot hold; grant write, or keep the file on a file "
        "system that can (ext4, xfs, btrfs, tmpfs)"));
  }
  if (attributes & FS_APPEND_FL) return absl::OkStatus();
  if (created) {
    attributes |= FS_APPEND_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &attributes) == 0) return absl::OkStatus();
    std::string refused = absl::StrCat(
        "cannot make the new file ", path, " append-only (", std::strerror(errno),
        "; that takes CAP_LINUX_IMMUTABLE, which a broker run as root has)");
    if (absl::Status removed = RemoveCreated(fd, target); !removed.ok()) {
      absl::StrAppend(&refused, "; the empty file it made could not be removed again (",
                      removed.message(), "): remove it");
    }
    return absl::FailedPreconditionError(refused);
  }
  return absl::FailedPreconditionError(absl::StrCat(
      path, " is not append-only, so an append grant cannot hold: whoever holds an "
      "O_APPEND fd can turn O_APPEND off or truncate the file. Make it append-only "
      "(chattr +a ", path, "), or grant write"));
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

uint64_t PolicyResolve(bool follow_symlinks) {
  return follow_symlinks ? 0 : (RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

}  // namespace

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
                                  bool follow_symlinks, HardLinks hard_links) {
  CB_RETURN_IF_ERROR(CheckTruncate(how));
  CB_ASSIGN_OR_RETURN(int flags, AccessFlags(how.access));
  if (how.create) flags |= O_CREAT;
  if (how.truncate) flags |= O_TRUNC;
  bool created = false;
  // The policy's path is a name in a directory, which others may be able
  // to write: it may be a link made there to another's file (see HardLinks).
  const Target target{AT_FDCWD, std::string(path), PolicyResolve(follow_symlinks), "open",
                      false, hard_links == HardLinks::kUnprotected};
  CB_ASSIGN_OR_RETURN(UniqueFd fd, OpenChecked(target, flags, how.mode, created));
  if (how.append_only) CB_RETURN_IF_ERROR(RequireAppendOnly(fd.get(), created, target));
  return fd;
}

absl::StatusOr<UniqueFd> OpenDirectory(absl::string_view path,
                                       bool follow_symlinks) {
  std::string p(path);
  CB_ASSIGN_OR_RETURN(UniqueFd fd,
                      Openat2(AT_FDCWD, p, O_RDONLY | O_DIRECTORY, 0,
                              PolicyResolve(follow_symlinks), "open directory"));
  return fd;
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
                                     bool* created) {
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
  CB_RETURN_IF_ERROR(CheckTruncate(how));
  CB_ASSIGN_OR_RETURN(int flags, AccessFlags(how.access));
  if (how.create) flags |= O_CREAT;
  if (how.truncate) flags |= O_TRUNC;
  // RESOLVE_NO_XDEV: beneath the directory the administrator granted, a
  // mount is someone else's doing (a user's FUSE mount, say, whose server
  // could stall the broker, or a tree the grant never meant).
  Target target{dirfd, std::string(relative),
                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
                "open beneath:", how.access == schema::Access::READ && !how.create,
                hard_links == HardLinks::kUnprotected};
  bool made = false;
  CB_ASSIGN_OR_RETURN(UniqueFd fd, OpenChecked(target, flags, how.mode & 0777, made));
  if (how.append_only) CB_RETURN_IF_ERROR(RequireAppendOnly(fd.get(), made, target));
  if (created != nullptr) *created = made;
  return fd;
}

}  // namespace capbroker::caps
