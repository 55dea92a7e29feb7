#include "broker/caps/path_walk.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/caps/sticky_directory.h"
#include "broker/util/trusted_path.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::caps {
namespace {

// How often the walk's O_EXCL create is tried when a name is made and
// removed again between it and the lookup that follows.
constexpr int kCreateAttempts = 8;

// "open PATH", "open beneath: PATH": how messages name the lookup.
std::string Named(const Lookup& lookup) { return absl::StrCat(lookup.what, " ", lookup.path); }

// A '..' above the start of a walk beneath a directory, or a name on
// another mount there.
absl::Status LeavesItsDirectory(const Lookup& lookup) {
  return absl::PermissionDeniedError(absl::StrCat(
      Named(lookup), ": the path leaves its directory (by '..', or into another mount)"));
}

// One openat2 of `name` in `dirfd` for the lookup `lookup`, its errors said
// for the whole path.
absl::StatusOr<UniqueFd> OpenStep(int dirfd, const std::string& name, uint64_t flags, mode_t mode,
                                  const Lookup& lookup) {
  // openat2 refuses O_PATH with any flag but a few (O_NOCTTY included).
  absl::StatusOr<UniqueFd> fd =
      Openat2(dirfd, name, flags | ((flags & O_PATH) ? 0 : O_NOCTTY), (flags & O_CREAT) ? mode : 0,
              RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                  (lookup.beneath ? RESOLVE_BENEATH | RESOLVE_NO_XDEV : 0));
  if (fd.ok()) return fd;
  const int err = OpenatErrno(fd.status());
  switch (err) {
    case EXDEV:
      return LeavesItsDirectory(lookup);
    case ENOENT:
      return absl::NotFoundError(absl::StrCat(Named(lookup), ": no such file or directory"));
    default:
      return OpenError(ErrnoStatus(err, Named(lookup)));
  }
}

// A directory the walk holds: its fd (borrowed, owned, or -1 once no '..'
// can come back to it) and its fstat.
struct Dir {
  UniqueFd owned;
  int fd;
  struct stat st;
};

class Walker {
 public:
  explicit Walker(const Lookup& lookup)
      : lookup_(lookup), symlinks_(util::PathRules{geteuid(), lookup.path, std::nullopt}) {}

  absl::StatusOr<Found> Run(int create_flags, mode_t mode) {
    const bool absolute = !lookup_.path.empty() && lookup_.path.front() == '/';
    CB_RETURN_IF_ERROR(Start(absolute));
    Splice(lookup_.path);
    return Loop(create_flags, mode);
  }

 private:
  // Walks the rest.
  absl::StatusOr<Found> Loop(int create_flags, mode_t mode) {
    while (!rest_.empty()) {
      std::string name = std::move(rest_.front());
      rest_.pop_front();
      if (name == "..") --pending_up_;
      if (name == "." || name == "..") {
        if (!S_ISDIR(stack_.back().st.st_mode)) {
          return OpenError(ErrnoStatus(ENOTDIR, Named(lookup_)));
        }
        if (name == "..") CB_RETURN_IF_ERROR(Up());
        continue;
      }
      const bool last = rest_.empty();
      if (last && (create_flags & O_CREAT)) return Last(name, create_flags, mode);
      CB_ASSIGN_OR_RETURN(Found entry, Step(name));
      if (S_ISLNK(entry.st.st_mode)) {
        CB_RETURN_IF_ERROR(Follow(entry, name));
        continue;
      }
      if (last) return entry;
      Push(std::move(entry.fd), entry.st, name);
    }
    // The path ends at a directory the walk holds ("dir/.", "a/..", "dir/").
    Found found;
    found.st = stack_.back().st;
    CB_ASSIGN_OR_RETURN(found.fd, TakeTop());
    return found;
  }

  // The start: "/" for an absolute path, else `dirfd`.
  absl::Status Start(bool absolute) {
    stack_.clear();
    closed_below_ = 0;
    shown_ = absolute ? "/" : "";
    Dir start{UniqueFd(), lookup_.dirfd, {}};
    if (absolute || lookup_.dirfd == AT_FDCWD) {
      CB_ASSIGN_OR_RETURN(
          start.owned, OpenStep(AT_FDCWD, absolute ? "/" : ".", O_PATH | O_DIRECTORY, 0, lookup_));
      start.fd = start.owned.get();
    }
    if (fstat(start.fd, &start.st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fstat of the start of ", lookup_.path));
    }
    stack_.push_back(std::move(start));
    return absl::OkStatus();
  }

  // Puts the components of `path` in front of the rest.
  void Splice(absl::string_view path) {
    std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
    // "dir/" names a directory: a '.' last asks the walk to check that.
    if (!path.empty() && path.back() == '/' && !parts.empty()) parts.push_back(".");
    pending_up_ += std::count(parts.begin(), parts.end(), "..");
    rest_.insert(rest_.begin(), std::make_move_iterator(parts.begin()),
                 std::make_move_iterator(parts.end()));
  }

  std::string Shown(absl::string_view name) const {
    if (shown_.empty()) return std::string(name);
    return absl::StrCat(shown_, shown_.back() == '/' ? "" : "/", name);
  }

  // `name` in the directory on top, O_PATH, not followed, fstat'ed and
  // checked against the sticky-directory rule.
  absl::StatusOr<Found> Step(const std::string& name) {
    if (lookup_.follow_symlinks) symlinks_.Enter(shown_, stack_.back().st);
    Found entry;
    CB_ASSIGN_OR_RETURN(entry.fd,
                        OpenStep(stack_.back().fd, name, O_PATH | O_NOFOLLOW, 0, lookup_));
    const std::string shown = Shown(name);
    if (fstat(entry.fd.get(), &entry.st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fstat ", shown));
    }
    std::string what = Named(lookup_);
    if (shown != lookup_.path) absl::StrAppend(&what, ": ", shown);
    CB_RETURN_IF_ERROR(
        CheckStickyDirectoryOwner(stack_.back().st, entry.st, geteuid(), what));
    return entry;
  }

  // The last name, with O_CREAT: made there when it is not there yet,
  // else looked up (a link followed, where links are).
  absl::StatusOr<Found> Last(const std::string& name, int create_flags, mode_t mode) {
    for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
      // What the caller needs to remove the file again (OpenEffects: the
      // directory, the file's identity) is all in hand before the create or
      // taken by calls that cannot fail after it, so that no error leaves
      // a file made behind: a borrowed directory is duplicated first.
      UniqueFd copy;
      if (!stack_.back().owned) {
        CB_ASSIGN_OR_RETURN(copy, TakeTop());
      }
      absl::StatusOr<UniqueFd> made =
          OpenStep(stack_.back().fd, name, create_flags | O_EXCL, mode, lookup_);
      if (made.ok()) {
        Found found;
        found.fd = *std::move(made);
        found.created = true;
        found.name = name;
        // fstat of a file just made fails only where its file system does
        // (EIO): its identity unknown, the name may not be removed (it may
        // name another's file by now), and the administrator is told.
        if (fstat(found.fd.get(), &found.st) != 0) {
          return ErrnoStatus(errno, absl::StrCat("fstat of the new file ", Named(lookup_),
                                                 " (made, and left there: remove it)"));
        }
        found.directory = copy ? std::move(copy) : std::move(stack_.back().owned);
        return found;
      }
      if (made.status().code() != absl::StatusCode::kAlreadyExists) return made.status();
      absl::StatusOr<Found> entry = Step(name);
      // Removed between the two opens: make it after all.
      if (entry.status().code() == absl::StatusCode::kNotFound) continue;
      if (!entry.ok() || !S_ISLNK(entry->st.st_mode)) return entry;
      CB_RETURN_IF_ERROR(Follow(*entry, name));
      return Loop(create_flags, mode);
    }
    // O_EXCL sees a name, O_PATH finds nothing behind it, every time.
    return absl::FailedPreconditionError(absl::StrCat(
        Named(lookup_),
        ": the name exists but names nothing that can be opened (it keeps changing)"));
  }

  // The symlink `entry` (O_PATH, and its fstat), found at `name`: checked
  // against util::SymlinkRule (a link another user could have placed or
  // could re-point would let them choose what the broker opens), then its
  // target goes in front of the rest.
  absl::Status Follow(const Found& entry, const std::string& name) {
    const int link = entry.fd.get();
    const std::string named = Named(lookup_);
    if (!lookup_.follow_symlinks) {
      return absl::PermissionDeniedError(
          absl::StrCat(named, ": the path contains a symlink, which is refused"));
    }
    if (++links_ > kMaxSymlinks) {
      return absl::FailedPreconditionError(
          absl::StrCat(named, ": too many levels of symbolic links (a loop, or more than ",
                       kMaxSymlinks, " links on the way); fix the links on the path"));
    }
    struct statfs fs;
    if (fstatfs(link, &fs) != 0) return ErrnoStatus(errno, absl::StrCat("fstatfs ", named));
    if (fs.f_type == PROC_SUPER_MAGIC) {
      return absl::PermissionDeniedError(absl::StrCat(
          named, ": the path goes through a link in /proc, which the broker does not follow"));
    }
    CB_RETURN_IF_ERROR(symlinks_.Check(Shown(name), "", entry.st));
    char target[PATH_MAX];
    const ssize_t n = readlinkat(link, "", target, sizeof(target));
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink ", Shown(name)));
    if (n == 0 || static_cast<size_t>(n) >= sizeof(target)) {
      return absl::FailedPreconditionError(absl::StrCat(
          named, ": the link ", Shown(name), " is empty or longer than PATH_MAX"));
    }
    const absl::string_view text(target, static_cast<size_t>(n));
    if (text.front() == '/') CB_RETURN_IF_ERROR(Start(/*absolute=*/true));
    Splice(text);
    return absl::OkStatus();
  }

  // Enters the directory `fd` found at `name`, and closes the fds no '..'
  // still to come can reach.
  void Push(UniqueFd fd, const struct stat& st, const std::string& name) {
    const int raw = fd.get();
    stack_.push_back(Dir{std::move(fd), raw, st});
    shown_ = Shown(name);
    const size_t reachable = static_cast<size_t>(std::max(pending_up_, 0)) + 1;
    for (; closed_below_ + reachable < stack_.size(); ++closed_below_) {
      stack_[closed_below_].owned.reset();
      stack_[closed_below_].fd = -1;
    }
  }

  // '..': back to the directory the walk came from; at the start, refused
  // beneath a directory, and "/" stays "/". A directory whose fd was closed
  // (a link's target brought more '..' than the walk foresaw) is found by
  // the kernel's '..' of the one on top: links are followed only outside a
  // walk beneath a directory, where '..' has no limit but "/".
  absl::Status Up() {
    shown_ = Shown("..");
    if (stack_.size() == 1) {
      if (!lookup_.beneath) return absl::OkStatus();
      return LeavesItsDirectory(lookup_);
    }
    Dir& below = stack_[stack_.size() - 2];
    if (below.fd < 0) {
      CB_ASSIGN_OR_RETURN(below.owned,
                          OpenStep(stack_.back().fd, "..", O_PATH | O_DIRECTORY, 0, lookup_));
      below.fd = below.owned.get();
      if (fstat(below.fd, &below.st) != 0) {
        return ErrnoStatus(errno, absl::StrCat("fstat ", shown_));
      }
      closed_below_ = stack_.size() - 2;
    }
    stack_.pop_back();
    return absl::OkStatus();
  }

  // The fd of the directory on top, owned (a borrowed start duplicated).
  absl::StatusOr<UniqueFd> TakeTop() {
    Dir& top = stack_.back();
    if (top.owned) return std::move(top.owned);
    UniqueFd copy(fcntl(top.fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) return ErrnoStatus(errno, absl::StrCat("dup ", lookup_.path));
    return copy;
  }

  const Lookup& lookup_;
  // Where links are followed: which ones may be (the directories the walk
  // looked names up in, told as it goes).
  util::SymlinkRule symlinks_;
  std::vector<Dir> stack_;
  size_t closed_below_ = 0;  // stack_[i].fd is -1 below this
  std::deque<std::string> rest_;
  int pending_up_ = 0;  // the '..' among rest_
  int links_ = 0;
  std::string shown_;  // the directory on top, as the walk came to it
};

}  // namespace

absl::StatusOr<Found> Walk(const Lookup& lookup, int create_flags, mode_t mode) {
  return Walker(lookup).Run(create_flags, mode);
}

absl::Status OpenError(absl::Status status) {
  if (status.code() != absl::StatusCode::kPermissionDenied) return status;
  return absl::FailedPreconditionError(absl::StrCat(
      status.message(), ": the broker itself could not open the path (its permissions "
      "or attributes, or its file system, keep the broker out; the policy grants it)"));
}

}  // namespace capbroker::caps
