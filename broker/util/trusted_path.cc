#include "broker/util/trusted_path.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "sdk/base/escape.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::util {
namespace {

bool TrustedOwner(uid_t owner, uid_t euid) { return owner == 0 || owner == euid; }

// A path, a symlink's target or a subject as a message quotes it. Each is
// escaped here, where it enters a message, and nowhere else: the names come
// from configured paths and from the targets of links root placed, and a
// newline or an ESC in one would split the broker's stderr line (a refused
// reload's) or reach the terminal of whoever reads it, there, in capctl
// status or in capctl policy check. Text in any language stays as it is.
std::string Shown(absl::string_view text) { return EscapedKeepingUtf8(text); }

// "LINK -> TARGET", or "LINK" when the target was not read.
std::string ShownLink(absl::string_view link, absl::string_view target) {
  if (target.empty()) return Shown(link);
  return absl::StrCat(Shown(link), " -> ", Shown(target));
}

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

// "/", where every walk starts (and restarts, at an absolute link).
absl::StatusOr<UniqueFd> OpenRoot() {
  return TakeFd(RetryEintr([] { return open("/", O_PATH | O_DIRECTORY | O_CLOEXEC); }),
                "open(/, O_PATH)");
}

// The target of the symlink `link` (an O_PATH fd of the link itself) at
// `path`, on the way to `subject`.
absl::StatusOr<std::string> ReadLink(int link, const std::string& path,
                                     absl::string_view subject) {
  std::string target(PATH_MAX, '\0');
  // An empty name reads the link the fd refers to (Linux 2.6.39).
  ssize_t n = readlinkat(link, "", target.data(), target.size());
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink ", Shown(path)));
  if (static_cast<size_t>(n) == target.size()) {
    return absl::FailedPreconditionError(absl::StrCat("symlink ", Shown(path), ", on the path to ",
                                                      Shown(subject), ", is longer than PATH_MAX"));
  }
  target.resize(static_cast<size_t>(n));
  return target;
}

// One walk of OpenParent: the directory reached so far, and the components
// still to look up in order (a followed link puts its target's in front).
class Walk {
 public:
  explicit Walk(const PathRules& rules) : rules_(rules), symlinks_(rules) {}

  // Walks the absolute directory name `dir` to its end.
  absl::Status Run(absl::string_view dir) {
    for (std::string& c : Components(dir)) pending_.push_back(std::move(c));
    CB_RETURN_IF_ERROR(EnterRoot());
    while (!pending_.empty()) {
      std::string name = std::move(pending_.front());
      pending_.pop_front();
      // Whoever could write this directory could put anything at `name`.
      symlinks_.Enter(dir_path_, dir_stat_);
      CB_RETURN_IF_ERROR(symlinks_.way());
      CB_RETURN_IF_ERROR(Step(name));
    }
    return absl::OkStatus();
  }

  ResolvedParent Finish(std::string name) {
    return ResolvedParent{std::move(dir_), std::move(dir_path_), dir_stat_, std::move(name)};
  }

 private:
  absl::Status EnterRoot() {
    CB_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot());
    return Enter(std::move(root), "/");
  }

  absl::Status Enter(UniqueFd dir, std::string path) {
    if (fstat(dir.get(), &dir_stat_) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fstat ", Shown(path)));
    }
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
      return absl::NotFoundError(absl::StrCat(Shown(path), ", on the path to ",
                                              Shown(rules_.subject), ", does not exist"));
    }
    CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(raw, absl::StrCat("openat(", Shown(path),
                                                              ", O_PATH | O_NOFOLLOW)")));
    struct stat st;
    // On an O_PATH | O_NOFOLLOW fd of a symlink, fstat describes the link.
    if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat ", Shown(path)));
    if (S_ISLNK(st.st_mode)) return Follow(fd.get(), path, st);
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          Shown(path), ", on the path to ", Shown(rules_.subject), ", is not a directory"));
    }
    return Enter(std::move(fd), std::move(path));
  }

  // Checks the symlink `link` (an O_PATH fd of the link itself, so that the
  // owner checked and the target read are those of one inode) and queues
  // its target, to be looked up from the directory holding it or from "/".
  absl::Status Follow(int link, const std::string& path, const struct stat& st) {
    if (++links_ > kMaxSymlinks) {
      return absl::FailedPreconditionError(absl::StrCat(
          "more than ", kMaxSymlinks, " symlinks on the path to ", Shown(rules_.subject),
          " (a loop?); the last was ", Shown(path)));
    }
    CB_ASSIGN_OR_RETURN(std::string target, ReadLink(link, path, rules_.subject));
    CB_RETURN_IF_ERROR(symlinks_.Check(path, target, st));
    if (target.empty()) {  // the kernel's lookup fails with ENOENT too
      return absl::NotFoundError(absl::StrCat("symlink ", Shown(path), ", on the path to ",
                                              Shown(rules_.subject), ", is empty"));
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
      return ErrnoStatus(errno, absl::StrCat("mkdir ", Shown(path)));
    }
    // Not O_PATH: fchmod needs a real open. mkdir applied the umask, and
    // the mode must be exactly the one chosen.
    CB_ASSIGN_OR_RETURN(UniqueFd fd, TakeFd(RetryEintr([&] {
                                              return openat(dir_.get(), name.c_str(),
                                                            O_RDONLY | O_DIRECTORY |
                                                                O_NOFOLLOW | O_CLOEXEC);
                                            }),
                                            absl::StrCat("open ", Shown(path))));
    if (fchmod(fd.get(), mode) != 0) {
      return ErrnoStatus(errno, absl::StrCat("chmod ", Shown(path)));
    }
    return Enter(std::move(fd), std::move(path));
  }

  const PathRules& rules_;
  SymlinkRule symlinks_;
  std::deque<std::string> pending_;
  // Whether the last pending component is the configured path's own last
  // directory, which create_mode may create.
  bool last_is_configured_ = true;
  int links_ = 0;
  UniqueFd dir_;
  std::string dir_path_;
  struct stat dir_stat_ = {};
};

// One walk of ResolveTrustedLinks (or, `followed`, of CheckFollowedPath).
// It looks names up as Walk does and holds the same rules, but where Walk
// fails it notes: past a directory another user could change, the walk
// goes on (the broker will open what lies beyond all the same), but a
// symlink SymlinkRule does not let it follow stops it with kUnavailable.
// Followed, both are kFailedPrecondition. It also goes on past a name that
// does not exist (the rest as written), and looks at the last name too.
class Resolution {
 public:
  Resolution(std::string path, uid_t euid, bool may_block, bool followed)
      : path_(std::move(path)),
        may_block_(may_block),
        followed_(followed),
        symlinks_(PathRules{euid, path_, std::nullopt}) {}

  absl::StatusOr<std::string> Run() {
    absl::StatusOr<std::string> resolved = Walk();
    // Followed, a directory another user could change is the path's error
    // even where no link lies beyond it (yet): after a link met there,
    // which names itself.
    if (resolved.ok() && followed_) CB_RETURN_IF_ERROR(symlinks_.way());
    return resolved;
  }

 private:
  absl::StatusOr<std::string> Walk() {
    for (std::string& c : Components(path_)) pending_.push_back(std::move(c));
    CB_RETURN_IF_ERROR(EnterRoot());
    while (!pending_.empty()) {
      std::string name = std::move(pending_.front());
      pending_.pop_front();
      symlinks_.Enter(dir_path_, dir_stat_);
      CB_ASSIGN_OR_RETURN(std::optional<std::string> end, Step(name));
      if (end.has_value()) return *std::move(end);
    }
    return dir_path_;
  }

  absl::Status EnterRoot() {
    CB_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot());
    CB_ASSIGN_OR_RETURN(dir_stat_, Stat(root.get(), "/"));
    dir_ = std::move(root);
    dir_path_ = "/";
    return absl::OkStatus();
  }

  // `name` in the current directory, O_PATH: without may_block_, only if
  // the kernel's caches settle it (RESOLVE_CACHED; EAGAIN otherwise).
  absl::StatusOr<UniqueFd> Lookup(const std::string& name, int flags) const {
    return Openat2(dir_.get(), name, static_cast<uint64_t>(O_PATH | flags), 0,
                   may_block_ ? 0 : RESOLVE_CACHED);
  }

  // The type, mode and owner of `fd`; without may_block_, as cached (no
  // FUSE or NFS server is asked).
  absl::StatusOr<struct stat> Stat(int fd, const std::string& path) const {
    struct statx stx = {};
    const unsigned int wanted = STATX_TYPE | STATX_MODE | STATX_UID;
    const int sync = may_block_ ? AT_STATX_SYNC_AS_STAT : AT_STATX_DONT_SYNC;
    if (statx(fd, "", AT_EMPTY_PATH | sync, wanted, &stx) != 0) return CannotTell(path, errno);
    if ((stx.stx_mask & wanted) != wanted) return CannotTell(path, ENODATA);
    struct stat st = {};
    st.st_mode = stx.stx_mode;
    st.st_uid = stx.stx_uid;
    return st;
  }

  static absl::Status CannotTell(const std::string& path, int error) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", Shown(path), ": ", strerror(error)));
  }

  // Looks `name` up: the resolved path when the walk ends there (at a
  // file, or where nothing is), nullopt to go on.
  absl::StatusOr<std::optional<std::string>> Step(const std::string& name) {
    // The walk's names have no symlinks, so ".." is the name's parent.
    std::string path = name == ".." ? ParentOf(dir_path_) : Join(dir_path_, name);
    absl::StatusOr<UniqueFd> found = Lookup(name, O_NOFOLLOW);
    if (!found.ok()) {
      const int errnum = OpenatErrno(found.status());
      if (errnum == ENOENT) return Missing(std::move(path));
      return CannotTell(path, errnum);
    }
    UniqueFd fd = *std::move(found);
    CB_ASSIGN_OR_RETURN(struct stat st, Stat(fd.get(), path));
    if (S_ISLNK(st.st_mode)) return Follow(name, fd.get(), std::move(path), st);
    if (S_ISDIR(st.st_mode)) {
      dir_ = std::move(fd);
      dir_path_ = std::move(path);
      dir_stat_ = st;
      return std::nullopt;
    }
    if (pending_.empty()) return path;  // a file, at the end
    return Missing(std::move(path));    // the kernel's lookup fails (ENOTDIR)
  }

  // Nothing to look the rest up in at `path`: the walk ends there, with the
  // names still pending as written (a file not created yet), unless the
  // path's last name was a link, which then leads to nothing.
  absl::StatusOr<std::optional<std::string>> Missing(std::string path) {
    if (last_is_link_ && !followed_) {
      return absl::FailedPreconditionError(
          absl::StrCat(Shown(path_), " is a symbolic link to a file that does not exist"));
    }
    for (const std::string& name : pending_) path = Join(path, name);
    return path;
  }

  // The symlink `name` at `path` (`link`, an O_PATH fd of the link itself,
  // stat `st`): checked, then its target queued in front, as Walk::Follow
  // does. A link SymlinkRule refuses is theirs to make and re-point
  // whenever they like: what it names now tells nothing (kUnavailable),
  // unless `followed_`, where it is the path's error.
  absl::StatusOr<std::optional<std::string>> Follow(const std::string& name, int link,
                                                    std::string path, const struct stat& st) {
    if (absl::Status refused = symlinks_.Check(path, "", st); !refused.ok()) {
      if (followed_) return refused;
      return absl::UnavailableError(
          absl::StrCat(refused.message(), " (what it names now tells nothing)"));
    }
    if (++links_ > kMaxSymlinks) {
      return absl::UnavailableError(
          absl::StrCat("more than ", kMaxSymlinks, " symlinks on ", Shown(path_), " (a loop?)"));
    }
    if (!may_block_) {
      // readlink asks the file system for a target it has not cached (a
      // FUSE or NFS server, which may never answer). A lookup through the
      // link from the caches alone, which reads the target only as the
      // kernel holds it, tells whether that is so.
      absl::StatusOr<UniqueFd> through = Lookup(name, 0);
      if (OpenatErrno(through.status()) == EAGAIN) return CannotTell(path, EAGAIN);
    }
    CB_ASSIGN_OR_RETURN(std::string target, ReadLink(link, path, path_));
    if (target.empty()) {  // the kernel's lookup fails with ENOENT
      return absl::FailedPreconditionError(
          absl::StrCat(Shown(path_), " goes through the empty symbolic link ", Shown(path)));
    }
    if (pending_.empty()) last_is_link_ = true;
    std::vector<std::string> components = Components(target);
    pending_.insert(pending_.begin(), components.begin(), components.end());
    if (target[0] == '/') CB_RETURN_IF_ERROR(EnterRoot());
    return std::nullopt;
  }

  const std::string path_;
  const bool may_block_;
  const bool followed_;
  SymlinkRule symlinks_;
  std::deque<std::string> pending_;
  // The last name of the path is a symlink (or the last of the target of
  // one that was): a name missing on the way from there means that the
  // path leads to nothing.
  bool last_is_link_ = false;
  int links_ = 0;
  UniqueFd dir_;
  std::string dir_path_;
  struct stat dir_stat_ = {};
};

}  // namespace

absl::StatusOr<std::string> ResolveTrustedLinks(absl::string_view path, uid_t euid,
                                                bool may_block) {
  CB_ASSIGN_OR_RETURN(std::string absolute, Absolute(path));
  return Resolution(std::move(absolute), euid, may_block, /*followed=*/false).Run();
}

absl::Status CheckFollowedPath(absl::string_view path, uid_t euid, bool may_block) {
  CB_ASSIGN_OR_RETURN(std::string absolute, Absolute(path));
  return Resolution(std::move(absolute), euid, may_block, /*followed=*/true).Run().status();
}

absl::StatusOr<ResolvedParent> OpenParent(absl::string_view path, const PathRules& rules) {
  size_t slash = path.rfind('/');
  absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  // The subject names the path already: it is not repeated. Nor is it
  // said to be a directory: "grants.cb/" may name a regular file.
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Shown(rules.subject), ": the path is empty; give the path of a file"));
  }
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat(Shown(rules.subject), " ends in '", name.empty() ? "/" : name,
                     "', so it names no file: give the path of a file"));
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
        Shown(dir), Shown(rules.subject), st.st_uid, st.st_mode & 07777, rules.euid));
  }
  // Sticky: others may add names but not rename or remove ours (/tmp).
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "directory %s, on the path to %s, is writable by other users (mode 0%o, owner uid "
        "%d), who could rename what it holds and put their own in its place; %s",
        Shown(dir), Shown(rules.subject), st.st_mode & 07777, st.st_uid,
        NonStickyWritableDirectoryHint(dir, st, rules.euid)));
  }
  return absl::OkStatus();
}

std::string NonStickyWritableDirectoryHint(absl::string_view dir, const struct stat& st,
                                           uid_t euid) {
  if (euid != 0 && st.st_uid == euid) return absl::StrCat("chmod go-w ", Shown(dir));
  return absl::StrFormat(
      "use a path whose directories only root or uid %d can write (chmod go-w %s only if "
      "nothing else needs to write there)",
      euid, Shown(dir));
}

absl::Status CheckSymlinkStat(absl::string_view link, absl::string_view target,
                              const struct stat& st, const PathRules& rules) {
  if (!TrustedOwner(st.st_uid, rules.euid)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "symlink %s, on the path to %s, is owned by uid %d, not by root or the broker (uid "
        "%d): another user could re-point it at any time, at a file or directory of their "
        "own; name the real path instead (readlink -f), or have root own the link",
        ShownLink(link, target), Shown(rules.subject), st.st_uid, rules.euid));
  }
  return absl::OkStatus();
}

void SymlinkRule::Enter(absl::string_view dir, const struct stat& st) {
  const std::string where = absl::StrFormat("directory %s (owner uid %d, mode 0%o)", Shown(dir),
                                            st.st_uid, st.st_mode & 07777);
  changeable_is_last_ = false;
  if (way_.ok()) {
    way_ = CheckTraversedDirectoryStat(dir, st, rules_);
    if (!way_.ok()) {
      changeable_ = where;
      changeable_is_last_ = true;
    }
  }
  writable_by_others_ = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 ? where : "";
}

absl::Status SymlinkRule::Check(absl::string_view link, absl::string_view target,
                                const struct stat& st) const {
  CB_RETURN_IF_ERROR(CheckSymlinkStat(link, target, st, rules_));
  if (way_.ok() && writable_by_others_.empty()) return absl::OkStatus();
  const bool in_changeable = !way_.ok();
  return absl::FailedPreconditionError(absl::StrFormat(
      "symlink %s (owner uid %d), on the path to %s, lies %s %s, which %s: they could have "
      "put the link there (renamed in from a directory of theirs) and can re-point it the "
      "same way; the broker follows only links that root or the broker (uid %d) alone could "
      "have placed: name the real path instead (readlink -f), or keep the link in "
      "directories that only root or the broker can write",
      ShownLink(link, target), st.st_uid, Shown(rules_.subject),
      in_changeable && !changeable_is_last_ ? "beyond" : "in",
      in_changeable ? changeable_ : writable_by_others_,
      in_changeable ? "another user could change" : "other users may write to",
      rules_.euid));
}

absl::Status CheckTrustedFileStat(absl::string_view noun, absl::string_view path,
                                  const struct stat& st, uid_t euid) {
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(noun, " ", Shown(path), " is ", FileType(st.st_mode), ", not a regular file"));
  }
  if (!TrustedOwner(st.st_uid, euid)) {
    return absl::FailedPreconditionError(
        absl::StrCat(noun, " ", Shown(path), " is owned by uid ", st.st_uid,
                     ", not by root or the broker (uid ", euid, "); chown root ", Shown(path)));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s %s is writable by other users (mode 0%o); chmod go-w %s", noun,
                        Shown(path), st.st_mode & 07777, Shown(path)));
  }
  return absl::OkStatus();
}

}  // namespace capbroker::util
