#include "broker/util/trusted_path.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::util {
namespace {

bool TrustedOwner(uid_t owner, uid_t euid) { return owner == 0 || owner == euid; }

std::string Join(absl::string_view dir, absl::string_view name) {
  return dir == "/" ? absl::StrCat("/", name) : absl::StrCat(dir, "/", name);
}

// The name of the directory holding `path` (absolute, without symlinks).
std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// The components of `path` to look up: empty ones and "." name the
// directory they are in, so they are dropped.
std::vector<std::string> Components(absl::string_view path) {
  std::vector<std::string> components;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (c != ".") components.emplace_back(c);
  }
  return components;
}

// `dir` made absolute from the working directory. getcwd returns the
// kernel's name for it, with no symlinks; glibc fails with ENOENT rather
// than return a name outside our root ("(unreachable)/...").
absl::StatusOr<std::string> Absolute(absl::string_view dir) {
  if (!dir.empty() && dir[0] == '/') return std::string(dir);
  std::string cwd(PATH_MAX, '\0');
  if (getcwd(cwd.data(), cwd.size()) == nullptr) return ErrnoStatus(errno, "getcwd");
  cwd.resize(cwd.find('\0'));
  return Join(cwd, dir);
}

// What a file that is not a regular one is, for messages.
absl::string_view FileType(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symlink";
  return "special";
}

// One walk of OpenParent: the directory reached so far, and the components
// still to look up in order (a followed link puts its target's in front).
class Walk {
 public:
  explicit Walk(const PathRules& rules) : rules_(rules) {}

  // Walks the absolute directory name `dir` to its end.
  absl::Status Run(absl::string_view dir) {
    for (std::string& c : Components(dir)) pending_.push_back(std::move(c));
    CB_RETURN_IF_ERROR(EnterRoot());
    while (!pending_.empty()) {
      std::string name = std::move(pending_.front());
      pending_.pop_front();
      // Whoever could write this directory could put anything at `name`.
      CB_RETURN_IF_ERROR(CheckTraversedDirectoryStat(dir_path_, dir_stat_, rules_));
      CB_RETURN_IF_ERROR(Step(name));
    }
    return absl::OkStatus();
  }

  ResolvedParent Finish(std::string name) {
    return ResolvedParent{std::move(dir_), std::move(dir_path_), dir_stat_, std::move(name)};
  }

 private:
  absl::Status EnterRoot() {
    CB_ASSIGN_OR_RETURN(UniqueFd root,
                        TakeFd(RetryEintr([] {
                                 return open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                               }),
                               "open(/, O_PATH)"));
    return Enter(std::move(root), "/");
  }

  absl::Status Enter(UniqueFd dir, std::string path) {
    if (fstat(dir.get(), &dir_stat_) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
    dir_ = std::move(dir);
    dir_path_ = std::move(path);
    return absl::OkStatus();
  }

  // Looks `name` up in the current directory and goes there (or, for a
  // symlink, queues its target).
  absl::Status Step(const std::string& name) {
    // The walk's names have no symlinks, so ".." is the name's parent. At
    // "/", ".." is "/" itself, for the kernel too.
    std::string path = name == ".." ? ParentOf(dir_path_) : Join(dir_path_, name);
    int raw = RetryEintr([&] {
      return openat(dir_.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    });
    if (raw < 0 && errno == ENOENT) {
      if (pending_.empty() && last_is_configured_ && rules_.create_mode.has_value()) {
        return Create(name, std::move(path));
      }
      return absl::NotFoundError(absl::StrCat(path, ", on the path to ", rules_.subject,
                                              ", does not exist"));
    }
    CB_ASSIGN_OR_RETURN(UniqueFd fd,
                        TakeFd(raw, absl::StrCat("openat(", path, ", O_PATH | O_NOFOLLOW)")));
    struct stat st;
    // On an O_PATH | O_NOFOLLOW fd of a symlink, fstat describes the link.
    if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", path));
    if (S_ISLNK(st.st_mode)) return Follow(fd.get(), path, st);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ", on the path to ", rules_.subject, ", is not a directory"));
    }
    return Enter(std::move(fd), std::move(path));
  }

  // Checks the symlink `link` (an O_PATH fd of the link itself, so that the
  // owner checked and the target read are those of one inode) and queues
  // its target, to be looked up from the directory holding it or from "/".
  absl::Status Follow(int link, const std::string& path, const struct stat& st) {
    if (++links_ > kMaxSymlinks) {
      return absl::FailedPreconditionError(absl::StrCat(
          "more than ", kMaxSymlinks, " symlinks on the path to ", rules_.subject,
          " (a loop?); the last was ", path));
    }
    std::string target(PATH_MAX, '\0');
    // An empty name reads the link the fd refers to (Linux 2.6.39).
    ssize_t n = readlinkat(link, "", target.data(), target.size());
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink ", path));
    if (static_cast<size_t>(n) == target.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "symlink ", path, ", on the path to ", rules_.subject, ", is longer than PATH_MAX"));
    }
    target.resize(static_cast<size_t>(n));
    CB_RETURN_IF_ERROR(CheckSymlinkStat(path, target, st, rules_));
    if (target.empty()) {  // the kernel's lookup fails with ENOENT too
      return absl::NotFoundError(absl::StrCat("symlink ", path, ", on the path to ",
                                              rules_.subject, ", is empty"));
    }
    // What a link at the end names is not the configured directory: it is
    // never created through the link (mkdir does not follow one either).
    if (pending_.empty()) last_is_configured_ = false;
    std::vector<std::string> components = Components(target);
    pending_.insert(pending_.begin(), components.begin(), components.end());
    if (target[0] == '/') return EnterRoot();
    return absl::OkStatus();
  }

  // Creates the configured path's last directory, `name`, in the current
  // one (checked already: only root, the broker, or, if sticky, no one
  // else's rename can touch what we create there).
  absl::Status Create(const std::string& name, std::string path) {
    mode_t mode = *rules_.create_mode;
    if (mkdirat(dir_.get(), name.c_str(), mode) != 0) {
      return ErrnoStatus(errno, absl::StrCat("mkdir ", path));
    }
    // Not O_PATH: fchmod needs a real open. mkdir applied the umask, and
    // the mode must be exactly the one chosen.
    CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(RetryEintr([&] {
                                              return openat(dir_.get(), name.c_str(),
                                                            O_RDONLY | O_DIRECTORY |
                                                                O_NOFOLLOW | O_CLOEXEC);
                                            }),
                                            absl::StrCat("open ", path)));
    if (fchmod(fd.get(), mode) != 0) return ErrnoStatus(errno, absl::StrCat("chmod ", path));
    return Enter(std::move(fd), std::move(path));
  }

  const PathRules& rules_;
  std::deque<std::string> pending_;
  // Whether the last pending component is the configured path's own last
  // directory, which create_mode may create.
  bool last_is_configured_ = true;
  int links_ = 0;
  UniqueFd dir_;
  std::string dir_path_;
  struct stat dir_stat_ = {};
};

}  // namespace

absl::StatusOr<ResolvedParent> OpenParent(absl::string_view path, const PathRules& rules) {
  size_t slash = path.rfind('/');
  absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' names a directory, not a file, for ", rules.subject));
  }
  absl::string_view dir = slash == absl::string_view::npos ? "."
                          : slash == 0                     ? "/"
                                                           : path.substr(0, slash);
  CB_ASSIGN_OR_RETURN(std::string absolute, Absolute(dir));
  Walk walk(rules);
  CB_RETURN_IF_ERROR(walk.Run(absolute));
  return walk.Finish(std::string(name));
}

absl::Status CheckTraversedDirectoryStat(absl::string_view dir, const struct stat& st,
                                         const PathRules& rules) {
  if (!TrustedOwner(st.st_uid, rules.euid)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "directory %s, on the path to %s, is owned by uid %d (mode 0%o), who could rename "
        "what it holds and put their own in its place; use directories owned by root or "
        "the broker (uid %d)",
        dir, rules.subject, st.st_uid, st.st_mode & 07777, rules.euid));
  }
  // Sticky: others may add names but not rename or remove ours (/tmp).
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "directory %s, on the path to %s, is writable by other users (mode 0%o, owner uid "
        "%d), who could rename what it holds and put their own in its place; %s",
        dir, rules.subject, st.st_mode & 07777, st.st_uid,
        NonStickyWritableDirectoryHint(dir, st, rules.euid)));
  }
  return absl::OkStatus();
}

std::string NonStickyWritableDirectoryHint(absl::string_view dir, const struct stat& st,
                                           uid_t euid) {
  if (euid != 0 && st.st_uid == euid) return absl::StrCat("chmod go-w ", dir);
  return absl::StrFormat(
      "use a path whose directories only root or uid %d can write (chmod go-w %s only if "
      "nothing else needs to write there)",
      euid, dir);
}

absl::Status CheckSymlinkStat(absl::string_view link, absl::string_view target,
                              const struct stat& st, const PathRules& rules) {
  if (!TrustedOwner(st.st_uid, rules.euid)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "symlink %s -> %s, on the path to %s, is owned by uid %d, not by root or the "
        "broker (uid %d): its owner could point it at a directory of their own at any "
        "time; name the real path instead (readlink -f), or have root own the link",
        link, target, rules.subject, st.st_uid, rules.euid));
  }
  return absl::OkStatus();
}

absl::Status CheckTrustedFileStat(absl::string_view noun, absl::string_view path,
                                  const struct stat& st, uid_t euid) {
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(noun, " ", path, " is ", FileType(st.st_mode), ", not a regular file"));
  }
  if (!TrustedOwner(st.st_uid, euid)) {
    return absl::FailedPreconditionError(
        absl::StrCat(noun, " ", path, " is owned by uid ", st.st_uid,
                     ", not by root or the broker (uid ", euid, "); chown root ", path));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s %s is writable by other users (mode 0%o); chmod go-w %s", noun,
                        path, st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

}  // namespace capbroker::util
