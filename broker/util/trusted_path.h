// Resolving a path the broker is configured with (its socket's, its
// policy's) so that no other user can redirect it, at start or later.
//
// Whoever controls a name on the way to a file decides which file the path
// names: the owner of a directory can rename what it holds, so can anyone
// who may write to a directory that is not sticky, and the owner of a
// symlink can point it elsewhere at any time (in a sticky /tmp, by removing
// their own link and making a new one). Resolving the path first (realpath)
// and checking the directories it ends in never looks at the symlinks: a
// link owned by another user passes, and its owner re-points it at a
// directory of their own once the broker has started.
//
// OpenParent walks the path one component at a time from `/`, as the
// kernel's own lookup does, with openat(O_PATH | O_NOFOLLOW) on the
// directory reached so far, so that what is checked is what is used:
//   - every directory it looks a name up in must be owned by root or the
//     broker's euid, and not writable by group or others unless sticky
//     (others may then add names, but not rename or remove ours);
//   - every symlink must be owned by root or the broker's euid, in a
//     directory that neither group nor others may write, sticky or not
//     (SymlinkRule); it is then followed and its target walked the same
//     way, so links inside link targets are checked too, up to
//     kMaxSymlinks (sdk/base/syscall.h) of them.
// Root's links such as /var/run -> /run pass. A relative path is walked
// from the working directory's absolute name (getcwd, which has no
// symlinks), so the directories above the working directory count too.
//
// Once the walk has passed, every name on the path can be changed by root
// or the broker's user alone, so opening or binding the configured path
// later finds the same file.
//
// Messages quote paths, symlink targets and the subject escaped
// (EscapedKeepingUtf8, sdk/base/escape.h): the names come from configured
// paths and from the targets of links root placed, which may hold a
// newline or an ESC. They are escaped here, where they enter a message, so
// that every printer (the broker's stderr, capctl status, capctl policy
// check) may print the message as it is.
#ifndef CAPBROKER_BROKER_UTIL_TRUSTED_PATH_H_
#define CAPBROKER_BROKER_UTIL_TRUSTED_PATH_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::util {

// What a walk trusts and what it protects.
struct PathRules {
  // The broker's effective uid: besides root, the one owner trusted.
  uid_t euid = 0;
  // What the path leads to, for messages: "the socket /run/x/broker.sock",
  // as written (escaped where a message quotes it).
  std::string subject;
  // When set, a missing last directory of the configured path is created
  // with exactly this mode (not its parents; never through a symlink).
  std::optional<mode_t> create_mode;
};

// The directory holding a path's last component, reached by a checked walk.
struct ResolvedParent {
  // The directory: O_PATH (O_RDONLY if the walk created it), close-on-exec.
  UniqueFd dir;
  // Its absolute name with every symlink resolved.
  std::string dir_path;
  // Its fstat. Not checked by the walk: the caller applies its own rule
  // (the socket's directory has a stricter one than those above it).
  struct stat dir_stat = {};
  // The last component of the path, to open or bind in `dir`.
  std::string name;
};

// Walks `path` as described above. Errors: kInvalidArgument when the path
// ends in "/", "." or ".." (it names no file); kNotFound when a directory on
// the way does not exist (nor may be created); kFailedPrecondition for a
// directory or symlink another user could change, something on the way that
// is not a directory, or more than kMaxSymlinks links; else the errno status
// of the failed call.
absl::StatusOr<ResolvedParent> OpenParent(absl::string_view path, const PathRules& rules);

// Where the absolute `path` leads, for the policy's checks of the paths the
// broker opens or compares later (a capability's path, a principal's exe):
// every symlink resolved, walked one name at a time from "/" as OpenParent
// walks, the last name too. A symlink found there settles something only
// when no user but root or `euid` could have put it in place or could
// change it (SymlinkRule). Anyone else's link, or one of root's in a
// directory another user may change or write (they could have moved it
// there), is theirs to make and re-point whenever they like: what it names
// now tells nothing, and a refusal because of it would be theirs to cause.
//
// Returns the resolved path (`path` itself when no symlink is on it); for
// a path not there (yet), its longest existing part resolved and the rest
// as written. kFailedPrecondition when `path` ends in a symlink that
// settles something and leads to nothing. kUnavailable when it cannot be
// told: a symlink on the way that settles nothing, a name that cannot be
// looked up (a directory that may not be searched), more than kMaxSymlinks
// links; and, without `may_block`, a name, link or inode the kernel's
// caches do not hold (openat2 RESOLVE_CACHED, statx AT_STATX_DONT_SYNC), so
// that a file system that does not answer (FUSE, NFS) cannot hold the
// caller.
absl::StatusOr<std::string> ResolveTrustedLinks(absl::string_view path, uid_t euid,
                                                bool may_block);

// The rule for each directory the walk looks a name up in, given its stat:
// owned by root or `rules.euid`, not writable by group or others unless
// sticky. Exposed so that callers apply it to the last directory too, and
// so that it can be tested for any owner (tests cannot always chown).
absl::Status CheckTraversedDirectoryStat(absl::string_view dir, const struct stat& st,
                                         const PathRules& rules);

// How to fix `dir` (stat `st`), a directory that is writable by group or
// others and not sticky, for a broker running as `euid`, for the end of a
// message. "chmod go-w DIR" outright only for the broker's own directory:
// anything else (a system directory such as /var/mail, group-writable by
// design) is likely written by others on purpose, so the hint says to use
// another directory, and to chmod only if nothing else needs to write there.
std::string NonStickyWritableDirectoryHint(absl::string_view dir, const struct stat& st,
                                           uid_t euid);

// The owner part of SymlinkRule, given a symlink's lstat: owned by root or
// `rules.euid`. `target` is what it points to, for the message ("" when
// not read).
absl::Status CheckSymlinkStat(absl::string_view link, absl::string_view target,
                              const struct stat& st, const PathRules& rules);

// The rule for the symlinks a walk follows, in this one place for every
// walk that follows them: OpenParent's, ResolveTrustedLinks' and
// CheckFollowedPath's here, and the broker's opens for capabilities with
// followSymlinks (broker/caps/path_walk.h). A link is followed only where no
// user but root or `rules.euid` could have put it or could change it:
//   - it is owned by root or `rules.euid` (CheckSymlinkStat);
//   - every directory the walk looked a name up in, up to and including the
//     one holding it, passes CheckTraversedDirectoryStat: the owner of one
//     that does not, or anyone who may write it, could rename what it holds;
//   - the directory holding it is writable by neither group nor others,
//     sticky or not: in a sticky one (/tmp) another user may add a name,
//     and a link of root's can be renamed in from a directory they may
//     write (or hard-linked, with fs.protected_hardlinks = 0).
// The walk tells it each directory it looks a name up in (Enter), then asks
// about each symlink it finds there (Check).
class SymlinkRule {
 public:
  explicit SymlinkRule(PathRules rules) : rules_(std::move(rules)) {}

  // Before the walk looks a name up in the directory `dir` (its stat `st`).
  void Enter(absl::string_view dir, const struct stat& st);

  // OK while every directory entered passes CheckTraversedDirectoryStat;
  // else the error for the first one that did not.
  const absl::Status& way() const { return way_; }

  // OK when the symlink `link` (its lstat `st`), found in the directory
  // entered last, may be followed; else kFailedPrecondition naming the link,
  // its owner, why another user could re-point it, and what to do. `target`
  // is what it points to, for the message ("" when not read yet).
  absl::Status Check(absl::string_view link, absl::string_view target,
                     const struct stat& st) const;

 private:
  PathRules rules_;
  absl::Status way_;
  // The first directory entered that failed CheckTraversedDirectoryStat, and
  // whether it is the one entered last; for messages.
  std::string changeable_;
  bool changeable_is_last_ = false;
  // The directory entered last, when its group or others may write it.
  std::string writable_by_others_;
};

// For a path the broker opens following symlinks (a file or directory
// capability with followSymlinks = true), resolved as ResolveTrustedLinks
// resolves: OK when every symlink on it now is one SymlinkRule lets a walk
// follow, and no name on it is looked up in a directory that fails
// CheckTraversedDirectoryStat (no link there would be followed, now or
// later). kFailedPrecondition, naming the link or the directory and saying
// what to do, otherwise; kUnavailable when it cannot be told, as for
// ResolveTrustedLinks. A path not there (yet), or ending in a link to
// nothing, passes: a request says what it finds.
absl::Status CheckFollowedPath(absl::string_view path, uid_t euid, bool may_block);

// The rule for a file the broker trusts at a walked path (its policy, its
// audit log), given the fstat of the file it opened: a regular file, owned
// by root or `euid`, and not writable by group or others. Messages name it
// as "<noun> <path>" ("policy /etc/capbroker/policy.capnp") and say the fix
// ("chown root <path>", "chmod go-w <path>").
absl::Status CheckTrustedFileStat(absl::string_view noun, absl::string_view path,
                                  const struct stat& st, uid_t euid);

}  // namespace capbroker::util

#endif  // CAPBROKER_BROKER_UTIL_TRUSTED_PATH_H_
