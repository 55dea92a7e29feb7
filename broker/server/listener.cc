#include "broker/server/listener.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "broker/util/trusted_path.h"
#include "sdk/base/decimal.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker::server {
namespace {

constexpr int kBacklog = 1024;

// Walks to the socket's directory with every name on the way checked
// (broker/util/trusted_path.h), creating the directory itself (one level)
// if it is missing, then applies the socket directory's own, stricter rule.
// `rules.create_mode` unset: a missing directory is kNotFound.
// `writable_fix` says, given the walk's result and the directory as
// configured, what to do about a directory others may write: the fix
// depends on what named the path (--socket, or a unit's
// ListenSequentialPacket=), which only the caller knows.
absl::Status CheckSocketDirectoryWith(
    const std::string& path, const util::PathRules& rules,
    absl::FunctionRef<std::string(const util::ResolvedParent&, absl::string_view configured)>
        writable_fix) {
  CB_ASSIGN_OR_RETURN(util::ResolvedParent parent, util::OpenParent(path, rules));
  const std::string configured = SocketDirectory(path);
  std::string shown = Shown(parent.dir_path);
  if (configured != parent.dir_path) absl::StrAppend(&shown, " (named ", Shown(configured), ")");
  return CheckSocketDirectoryStat(shown, parent.dir_stat, rules.euid,
                                  writable_fix(parent, configured));
}

absl::Status CheckSocketDirectory(const std::string& path, mode_t socket_mode) {
  const uid_t euid = geteuid();
  return CheckSocketDirectoryWith(
      path, util::PathRules{euid, absl::StrCat("the socket ", path),
                            SocketDirectoryModeFor(socket_mode)},
      [euid](const util::ResolvedParent& parent, absl::string_view configured) {
        // Hints name the directory as configured: that is what the admin types.
        return SocketFlagDirectoryFix(Shown(configured), parent.dir_stat, euid,
                                      Shown(parent.name));
      });
}

// Lock attempts before giving up; more than one is needed only when a
// broker that is stopping removes the lock file between our open and flock.
constexpr int kLockAttempts = 8;

// Opens and locks the lock file of `socket_path` (see listener.h).
absl::StatusOr<UniqueFd> TakeLock(const std::string& socket_path) {
  const std::string lock_path = LockFilePath(socket_path);
  // As messages show them: escaped, bounded.
  const std::string shown_lock = Shown(lock_path);
  for (int attempt = 0; attempt < kLockAttempts; ++attempt) {
    // Read-only: flock needs no write access, and a lock file made under a
    // umask without u+w (0277 makes it 0400) is then still opened after a
    // crash left it.
    int raw = RetryEintr([&] {
      return open(lock_path.c_str(),
                  O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0600);
    });
    if (raw < 0 && errno == ELOOP) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lock file ", shown_lock, " is a symlink; refusing to follow it"));
    }
    CB_ASSIGN_OR_RETURN(UniqueFd lock, TakeFd(raw, absl::StrCat("open ", shown_lock)));
    if (RetryEintr([&] { return flock(lock.get(), LOCK_EX | LOCK_NB); }) != 0) {
      if (errno == EWOULDBLOCK) {
        return absl::AlreadyExistsError(absl::StrCat(
            "another capbrokerd holds the lock ", shown_lock, " and serves ", Shown(socket_path),
            "; stop it first, or give this one another --socket"));
      }
      return ErrnoStatus(errno, absl::StrCat("flock(", shown_lock, ", LOCK_EX)"));
    }
    // A broker that stops removes the lock file while it still holds the
    // lock. If that happened between our open and our flock, we now hold a
    // lock on a file nobody else will open, while a third broker could
    // create and lock a new one: only a lock on the file that is at the path
    // now counts. Try again with the new file.
    struct stat held, now;
    if (fstat(lock.get(), &held) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fstat ", shown_lock));
    }
    if (lstat(lock_path.c_str(), &now) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus(errno, absl::StrCat("lstat ", shown_lock));
    }
    if (now.st_dev != held.st_dev || now.st_ino != held.st_ino) continue;
    if (!S_ISREG(held.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lock file ", shown_lock, " is not a regular file"));
    }
    // The mode listener.h promises, whatever the umask made it: as the
    // socket's directory is chmod-ed after it is made.
    if ((held.st_mode & 07777) != 0600 && fchmod(lock.get(), 0600) != 0) {
      return ErrnoStatus(errno, absl::StrFormat("fchmod(%s, 0600), of mode 0%o", shown_lock,
                                                held.st_mode & 07777));
    }
    return lock;
  }
  return absl::UnavailableError(absl::StrCat(
      "could not lock ", shown_lock, ": it was replaced ", kLockAttempts,
      " times while being locked"));
}

// Removes a socket file left by a broker that is gone; refuses to touch a
// live broker's socket or anything that is not a socket. Called with the
// lock held: no broker that binds its socket serves this path now.
absl::Status ClearStaleSocket(const std::string& path) {
  const std::string shown = Shown(path);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, absl::StrCat("lstat ", shown));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::AlreadyExistsError(absl::StrCat(
        shown, " exists and is not a socket; refusing to replace it"));
  }
  // Waits a clock tick at most (the least timeout ConnectSeqpacket takes):
  // connect(2) waits while the listener's queue of connections not yet accepted is
  // full, which anyone who may connect can make it, for as long as the
  // listener does not accept, and the broker's start would wait with it.
  // A full queue (kDeadlineExceeded) is a live listener all the same.
  absl::StatusOr<UniqueFd> probe = wire::ConnectSeqpacket(path, absl::ZeroDuration());
  if (probe.ok()) {
    return absl::AlreadyExistsError(absl::StrCat(
        "another broker is already listening on ", shown));
  }
  if (probe.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::AlreadyExistsError(absl::StrCat(
        "another program is listening on ", shown,
        " (its queue of connections waiting to be accepted is full); refusing to replace it"));
  }
  // A socket of the broker's own uid that it may not write to (a mode
  // without u+w) answers EACCES whether or not anything listens. With the
  // lock held, nothing of ours serves it: the leftover of a broker of this
  // user that died. (Root is never refused: it passes permission checks.)
  const bool own_unwritable =
      probe.status().code() == absl::StatusCode::kPermissionDenied && st.st_uid == geteuid();
  if (probe.status().code() != absl::StatusCode::kUnavailable && !own_unwritable) {
    // Connect failing otherwise (a socket of another type answers with
    // EPROTOTYPE): not ours to remove.
    return absl::AlreadyExistsError(absl::StrCat(
        shown, " is a socket that is not a stale broker socket (",
        probe.status().message(), "); refusing to replace it"));
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("unlink stale socket ", shown));
  }
  return absl::OkStatus();
}

// A file on the way to the socket: a directory, which a user must be let
// search (x), or the socket, which they must be let write (w): connect(2)
// checks both.
struct WayFile {
  SocketBlocker::Where where;
  std::string path;
  struct stat st;
};

// The permission `file` asks for, as an "other" bit: S_IXOTH or S_IWOTH.
mode_t Needed(const WayFile& file) {
  return file.where == SocketBlocker::Where::kSocket ? S_IWOTH : S_IXOTH;
}

// Whether the class of `file`'s mode that applies (the group's when
// `in_group`, else the others') grants what `file` asks for.
bool ClassAllows(const WayFile& file, bool in_group) {
  return (file.st.st_mode & (in_group ? Needed(file) << 3 : Needed(file))) != 0;
}

// A user as the kernel's permission check sees one: a uid (nullopt: one
// that owns none of the files on the way) and which of the files' groups
// it is a member of.
struct Visitor {
  std::optional<uid_t> uid;
  std::vector<gid_t> groups;
};

// Whether `file` lets `visitor` past. The kernel applies the first class
// that fits: owner, group, other. A file's owner is let past whatever its
// mode: it may chmod the file at any time (reaching it is for the other
// files to decide).
bool LetsPast(const WayFile& file, const Visitor& visitor) {
  if (visitor.uid.has_value() && *visitor.uid == file.st.st_uid) return true;
  const bool in_group = std::find(visitor.groups.begin(), visitor.groups.end(),
                                  file.st.st_gid) != visitor.groups.end();
  return ClassAllows(file, in_group);
}

// "/", then each directory on the way to the socket at `path` (symlinks
// resolved), its own last, then the socket: every file connect(2) checks.
absl::StatusOr<std::vector<WayFile>> WayToSocket(absl::string_view path) {
  std::string dir = SocketDirectory(path);
  char* resolved = realpath(dir.c_str(), nullptr);
  if (resolved == nullptr) return ErrnoStatus(errno, absl::StrCat("realpath ", Shown(dir)));
  std::string real(resolved);
  free(resolved);
  std::vector<std::string> dirs = {"/"};
  for (size_t slash = real.find('/', 1);; slash = real.find('/', slash + 1)) {
    if (slash == std::string::npos) {
      if (real != "/") dirs.push_back(real);
      break;
    }
    dirs.push_back(real.substr(0, slash));
  }
  std::vector<WayFile> way;
  for (const std::string& d : dirs) {
    WayFile file{d == real ? SocketBlocker::Where::kSocketDirectory
                           : SocketBlocker::Where::kDirectoryAbove,
                 d, {}};
    if (stat(d.c_str(), &file.st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", Shown(d)));
    way.push_back(std::move(file));
  }
  WayFile socket{SocketBlocker::Where::kSocket, std::string(path), {}};
  if (stat(socket.path.c_str(), &socket.st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("stat ", Shown(path)));
  }
  way.push_back(std::move(socket));
  return way;
}

// Who, besides root, `euid` and the members of `allowed_group`, can
// connect through `way` (WayToSocket), each as a phrase: "every other
// user", "its group, gid G", "the members of group G", "its owner, uid U,
// ...", "uid U, owner of directory D". Only the mode bits are read (not
// ACLs), and whose groups a user is in is not known: a user may be in any
// group but `allowed_group` (one in it is let in). The candidates are the
// owners of the files (other than root and `euid`) and a user owning none;
// each is taken to be in the groups that let it further: a group is worth
// being in when its class lets the candidate past every file of that group
// it does not own and the others' class does not. (The choice for one
// group changes nothing on the files of another, so this finds whoever
// can get in.) The overflow uid of a partial id map (`unmapped`) is no
// candidate: whoever reads as it, an owner the broker's user namespace does
// not map or the namespace's own user of that number, is refused at
// admission (peer::CheckIdsMapped), so it cannot use the socket. Its gid is
// still counted: a user the namespace maps may have an unmapped group among
// its supplementary groups, which SO_PEERCRED does not show.
std::vector<std::string> WhoElseGetsIn(const std::vector<WayFile>& way, uid_t euid,
                                       std::optional<gid_t> allowed_group,
                                       const peer::UnmappedIds& unmapped) {
  std::vector<std::optional<uid_t>> candidates = {std::nullopt};
  std::vector<gid_t> gids;
  for (const WayFile& file : way) {
    const uid_t owner = file.st.st_uid;
    if (owner != 0 && owner != euid && owner != unmapped.uid &&
        std::find(candidates.begin(), candidates.end(), owner) == candidates.end()) {
      candidates.push_back(owner);
    }
    if (file.st.st_gid != allowed_group &&
        std::find(gids.begin(), gids.end(), file.st.st_gid) == gids.end()) {
      gids.push_back(file.st.st_gid);
    }
  }
  const WayFile& socket = way.back();
  std::vector<std::string> who;
  for (const std::optional<uid_t>& uid : candidates) {
    Visitor visitor{uid, {}};
    for (const gid_t gid : gids) {
      bool group_lets_past = true, others_let_past = true;
      for (const WayFile& file : way) {
        if (file.st.st_gid != gid || (uid.has_value() && *uid == file.st.st_uid)) continue;
        group_lets_past = group_lets_past && ClassAllows(file, true);
        others_let_past = others_let_past && ClassAllows(file, false);
      }
      if (group_lets_past && !others_let_past) visitor.groups.push_back(gid);
    }
    if (!std::all_of(way.begin(), way.end(),
                     [&](const WayFile& file) { return LetsPast(file, visitor); })) {
      continue;
    }
    const std::string groups = absl::StrJoin(visitor.groups, " and ");
    const std::string group_word = visitor.groups.size() > 1 ? "groups " : "group ";
    if (!uid.has_value()) {
      if (visitor.groups.empty()) {
        who.push_back("every other user");
      } else if (visitor.groups.size() == 1 && visitor.groups[0] == socket.st.st_gid) {
        who.push_back(absl::StrCat("its group, gid ", socket.st.st_gid));
      } else {
        who.push_back(absl::StrCat("the members of ", group_word, groups));
      }
      continue;
    }
    std::string one;
    if (*uid == socket.st.st_uid) {
      one = absl::StrCat("its owner, uid ", *uid, ", not the broker's user");
    } else {
      const auto owned = std::find_if(way.begin(), way.end(), [&](const WayFile& file) {
        return file.st.st_uid == *uid;
      });
      one = absl::StrCat("uid ", *uid, ", owner of directory ", Shown(owned->path));
    }
    if (!visitor.groups.empty()) {
      absl::StrAppend(&one, " (as a member of ", group_word, groups, ")");
    }
    who.push_back(std::move(one));
  }
  return who;
}

// What keeps those users from `file` (of `st`): for a directory, search
// permission; for the socket (at `socket`), write permission, which
// connect(2) needs. The fix gives them that permission: for one group, on
// a file of another group, by giving it that group (its other bit would
// let every user in).
SocketBlocker Blocker(SocketBlocker::Where where, const std::string& file, const struct stat& st,
                      std::optional<gid_t> group, absl::string_view socket) {
  const bool is_socket = where == SocketBlocker::Where::kSocket;
  const std::string shown = Shown(file);
  const char* permission = is_socket ? "w" : "x";
  const bool in_group = group.has_value() && st.st_gid == *group;
  const std::string who = group.has_value()
                              ? absl::StrCat("the members of group ", *group, ", the socket's,")
                              : "other users";
  const std::string lacking =
      in_group
          ? absl::StrCat("g+", permission)
          : absl::StrCat("o+", permission, group.has_value() ? ", its group being another" : "");
  const std::string what = absl::StrFormat(
      "%s %s (owner uid %d, %smode 0%o)", is_socket ? "the socket" : "directory", shown, st.st_uid,
      group.has_value() ? absl::StrCat("group ", st.st_gid, ", ") : "", st.st_mode & 07777);
  const std::string why =
      is_socket ? absl::StrFormat("%s keeps %s out: connecting takes write permission (%s)", what,
                                  who, lacking)
                : absl::StrFormat("%s keeps %s from the socket %s: they may not search it (%s)",
                                  what, who, Shown(socket), lacking);
  std::string fix =
      !group.has_value() ? absl::StrCat("chmod o+", permission, " ", shown)
      : in_group         ? absl::StrCat("chmod g+", permission, " ", shown)
                 : absl::StrCat("chgrp ", *group, " ", shown, " && chmod g+", permission, " ", shown);
  return SocketBlocker{where, file, absl::FailedPreconditionError(why), std::move(fix)};
}

}  // namespace

std::string SocketFlagDirectoryFix(absl::string_view dir_path, const struct stat& st,
                                   uid_t euid, absl::string_view socket_name) {
  // A sticky directory (/tmp, /var/tmp) is shared by design: the fix is a
  // directory of the broker's own inside it, never a chmod of it, which
  // would break every other user of it. The walk accepts a sticky
  // directory on the way, and the broker creates the last one itself.
  if ((st.st_mode & S_ISVTX) == 0) return util::NonStickyWritableDirectoryHint(dir_path, st, euid);
  std::string own = dir_path == "/" ? "/capbroker" : absl::StrCat(dir_path, "/capbroker");
  return absl::StrCat("put the socket in a directory of its own there: --socket ", own, "/",
                      socket_name.empty() ? "broker.sock" : socket_name, " (the broker creates ",
                      own, "; or mkdir -m 0755 ", own,
                      " first); never chmod a shared directory such as /tmp");
}

absl::Status CheckSocketDirectoryStat(absl::string_view dir, const struct stat& st,
                                      uid_t euid, absl::string_view writable_fix) {
  if (st.st_uid != 0 && st.st_uid != euid) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "socket directory %s is owned by uid %d (mode 0%o), not by root or the broker "
        "(uid %d): its owner could replace the broker's socket with one of their own",
        dir, st.st_uid, st.st_mode & 07777, euid));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "socket directory %s is writable by other users (owner uid %d, mode 0%o): they "
        "could bind a socket of their own at its name%s",
        dir, st.st_uid, st.st_mode & 07777,
        writable_fix.empty() ? "" : absl::StrCat("; ", writable_fix)));
  }
  return absl::OkStatus();
}

absl::Status CheckReachableByOthers(absl::string_view path) {
  CB_ASSIGN_OR_RETURN(std::optional<SocketBlocker> blocker, FindSocketBlocker(path));
  return blocker.has_value() ? blocker->why : absl::OkStatus();
}

absl::StatusOr<std::optional<SocketBlocker>> FindSocketBlocker(absl::string_view path,
                                                               std::optional<gid_t> group) {
  CB_ASSIGN_OR_RETURN(const std::vector<WayFile> way, WayToSocket(path));
  Visitor visitor;
  if (group.has_value()) visitor.groups.push_back(*group);
  for (const WayFile& file : way) {
    if (!LetsPast(file, visitor)) return Blocker(file.where, file.path, file.st, group, path);
  }
  return std::nullopt;
}

absl::StatusOr<std::string> BoundSocketPath(int fd) {
  sockaddr_un address = {};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockname(fd=", fd, ")"));
  }
  const size_t offset = offsetof(sockaddr_un, sun_path);
  if (address.sun_family != AF_UNIX || length <= offset || address.sun_path[0] != '/') {
    return "";  // abstract (a leading NUL; autobound ones too), or unnamed
  }
  return std::string(address.sun_path, strnlen(address.sun_path, length - offset));
}

namespace {

// The socket from systemd at `path` (shown as `shown`), stat-ed into `st`.
// No file there, or no directory on the way: the unit bound it in another
// mount namespace (the service's PrivateTmp=, a container), or it was
// removed since; either way its permissions cannot be read from here.
// kFailedPrecondition saying so, with `what_to_do`. Another file at the
// path is refused too: the unit's socket cannot be told.
absl::Status StatTheSocketFromSystemd(const std::string& path, const std::string& shown,
                                      absl::string_view question,
                                      absl::string_view what_to_do, struct stat& st) {
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot tell ", question, ": its path ", shown,
          " is not visible in the broker's mount namespace (the service unit's PrivateTmp= "
          "or a container hides it, or it was removed since systemd bound it), so its "
          "permissions cannot be read; ", what_to_do));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot tell ", question, ": stat ", shown, ": ", std::strerror(errno), "; ",
        what_to_do));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot tell ", question, ": the file at ", shown, " is not a socket; ", what_to_do));
  }
  return absl::OkStatus();
}

// Who can connect to the socket from systemd at `path` (shown as `shown`)
// besides root, `euid` and the members of `allowed_group`: WhoElseGetsIn,
// the one answer both checks of a socket from systemd go by. An error
// saying that `question` cannot be answered, and `fix`, when a file on the
// way cannot be stat'ed.
absl::StatusOr<std::vector<std::string>> WhoElseCanConnect(const std::string& path,
                                                            const std::string& shown, uid_t euid,
                                                            std::optional<gid_t> allowed_group,
                                                            const peer::UnmappedIds& unmapped,
                                                            absl::string_view question,
                                                            absl::string_view fix) {
  absl::StatusOr<std::vector<WayFile>> way = WayToSocket(path);
  if (!way.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot tell ", question, " at ", shown, ": ", way.status().message(), "; ", fix));
  }
  return WhoElseGetsIn(*way, euid, allowed_group, unmapped);
}

// Makes the path visible: what makes either check possible.
constexpr char kMakeItVisible[] =
    "make the path visible to the broker (no PrivateTmp= in the service unit for a socket "
    "under /tmp; in a container, bind-mount the socket's directory at the same path)";

}  // namespace

absl::Status CheckOthersCannotConnect(int fd, const peer::UnmappedIds& unmapped) {
  constexpr char kFix[] =
      "a broker run by a user serves that user alone: in the .socket unit, set "
      "SocketMode=0600 (with SocketUser= the broker's user, for a system unit), or put the "
      "socket in a directory of mode 0700 owned by the broker's user; or, if every local "
      "user is meant to connect, pass --socket-mode 0666 (the socket's group is let in only "
      "when it is a SocketGroup= other than the broker's primary group and root's)";
  absl::StatusOr<std::string> bound = BoundSocketPath(fd);
  if (!bound.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot tell whether other users can connect to the socket from systemd: ",
        bound.status().message(), "; ", kFix));
  }
  const std::string& path = *bound;
  const std::string shown = Shown(path);
  if (path.empty()) {
    // No file, no permissions.
    return absl::FailedPreconditionError(absl::StrCat(
        "the socket from systemd is not bound to a path (an abstract socket, "
        "ListenSequentialPacket=@NAME): every user in the network namespace can connect to "
        "it; use a path, and ", kFix));
  }
  const std::string question = "whether other users can connect to the socket from systemd";
  struct stat st;
  // A broker run by a user checks this whatever its flags: only the path
  // made visible lets it start.
  CB_RETURN_IF_ERROR(StatTheSocketFromSystemd(path, shown, question, kMakeItVisible, st));
  // A SocketGroup= lets that group in by choice. The groups systemd gives
  // a socket without one are no choice: the broker's user's primary group
  // (a user unit's, or SocketUser= alone), which others may share (`users`
  // where each user has no group of their own), and root's (a system
  // unit's). Their members count as anyone else: the usual user setup, a
  // 0666 socket in /run/user/UID (0700, the user's), lets in no one more.
  std::optional<gid_t> allowed_group;
  if (st.st_gid != getegid() && st.st_gid != 0) allowed_group = st.st_gid;
  CB_ASSIGN_OR_RETURN(
      const std::vector<std::string> more,
      WhoElseCanConnect(path, shown, geteuid(), allowed_group, unmapped, question, kFix));
  if (more.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "other users can connect to the socket from systemd at %s (mode 0%o, owner uid %d): %s "
      "may connect; %s",
      shown, st.st_mode & 07777, st.st_uid, absl::StrJoin(more, " and "), kFix));
}

absl::Status CheckSocketDirectoryFromSystemd(int fd) {
  constexpr char kFix[] =
      "set ListenSequentialPacket= in the .socket unit to a path in a directory of its own, "
      "owned by root or the broker's user and not writable by others (such as "
      "/run/capbroker/broker.sock, with DirectoryMode=), and restart the .socket unit";
  absl::StatusOr<std::string> bound = BoundSocketPath(fd);
  if (!bound.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot tell who can replace the socket from systemd: ", bound.status().message(),
        "; ", kFix));
  }
  if (bound->empty()) return absl::OkStatus();  // abstract: no directory (see above)
  // systemd made the directory and bound the socket: --socket would be a
  // usage error, and the broker creates nothing; kFix, after every error,
  // is the only advice.
  absl::Status checked = CheckSocketDirectoryWith(
      *bound, util::PathRules{geteuid(), absl::StrCat("the socket from systemd ", *bound),
                              std::nullopt},
      [](const util::ResolvedParent&, absl::string_view) { return std::string(); });
  if (checked.ok()) return checked;
  return absl::Status(checked.code(),
                      absl::StrCat("the socket from systemd at ", Shown(*bound),
                                   " (the .socket unit's ListenSequentialPacket=): ",
                                   checked.message(), "; ", kFix));
}

absl::Status CheckSocketModeFromSystemd(int fd, mode_t socket_mode, uid_t euid,
                                        const peer::UnmappedIds& unmapped) {
  const unsigned wanted = static_cast<unsigned>(socket_mode & 07777);
  const std::string fix = absl::StrFormat(
      "the .socket unit, not --socket-mode, sets its mode: set SocketMode=0%o there (with "
      "SocketUser= the broker's user, uid %d, for a system unit) and restart the .socket "
      "unit, or put the socket in a directory of mode 0%o owned by root or the broker's user",
      wanted, euid, static_cast<unsigned>(SocketDirectoryModeFor(socket_mode)));
  const std::string question = absl::StrFormat(
      "whether the socket from systemd lets in more than --socket-mode 0%o says", wanted);
  absl::StatusOr<std::string> bound = BoundSocketPath(fd);
  if (!bound.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot tell ", question, ": ", bound.status().message(), "; ", fix));
  }
  const bool others_meant = (socket_mode & S_IWOTH) != 0;
  if (bound->empty()) {
    if (others_meant) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrFormat(
        "the socket from systemd is not bound to a path (an abstract socket, "
        "ListenSequentialPacket=@NAME): every user in the network namespace can connect to "
        "it, more than --socket-mode 0%o lets in; use a path in ListenSequentialPacket=, and "
        "%s",
        wanted, fix));
  }
  const std::string& path = *bound;
  const std::string shown = Shown(path);
  struct stat st;
  // The flag asked for a check that cannot be made: refused (fail closed).
  // A root broker needs no check without it; one run by a user checks that
  // other users are kept out all the same (CheckOthersCannotConnect).
  const std::string not_visible =
      euid == 0 ? absl::StrCat("leave --socket-mode out and rely on the .socket unit's "
                               "SocketMode= (and its directory's mode), or ",
                               kMakeItVisible)
                : kMakeItVisible;
  CB_RETURN_IF_ERROR(StatTheSocketFromSystemd(path, shown, question, not_visible, st));
  if (others_meant) return absl::OkStatus();
  // Who gets in is who may search every directory on the way and write to
  // the socket (connect(2) takes write permission), and whoever owns one of
  // them (it may chmod it): a 0666 socket in a 0700 directory of root or
  // the broker's user lets in no one else.
  std::optional<gid_t> allowed_group;
  if ((socket_mode & S_IWGRP) != 0) allowed_group = st.st_gid;
  CB_ASSIGN_OR_RETURN(const std::vector<std::string> more,
                      WhoElseCanConnect(path, shown, euid, allowed_group, unmapped, question, fix));
  if (more.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "the socket from systemd at %s (owner uid %d, mode 0%o) lets in more than "
      "--socket-mode 0%o says: %s may connect; %s",
      shown, st.st_uid, static_cast<unsigned>(st.st_mode & 07777), wanted,
      absl::StrJoin(more, " and "), fix));
}

absl::StatusOr<Listener> Listener::Bind(absl::string_view path,
                                        std::optional<mode_t> socket_mode) {
  CB_ASSIGN_OR_RETURN(wire::UnixAddress address, wire::MakeUnixAddress(path));
  std::string p(path);
  const mode_t mode = SocketModeFor(socket_mode);
  CB_RETURN_IF_ERROR(CheckSocketDirectory(p, mode));
  // From here every name on `p` can be changed by root or the broker alone,
  // so the lock, probe, bind and unlink below, which name `p` again, reach
  // the directory just checked.
  Listener listener;
  // Held from before the probe until the listener is gone: no other broker
  // can find our socket bound but not yet listening and take it for stale.
  CB_ASSIGN_OR_RETURN(listener.lock_, TakeLock(p));
  listener.lock_path_ = LockFilePath(p);
  CB_RETURN_IF_ERROR(ClearStaleSocket(p));
  CB_ASSIGN_OR_RETURN(
      listener.fd_,
      TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0),
             "socket(AF_UNIX, SOCK_SEQPACKET)"));
  // Before listen(): every connection takes it from its first datagram on.
  CB_RETURN_IF_ERROR(listener.RefuseFds());
  mode_t old_umask = umask(0177);
  int rc = bind(listener.fd_.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                address.length);
  int bind_errno = errno;
  umask(old_umask);
  if (rc != 0) return ErrnoStatus(bind_errno, absl::StrCat("bind ", Shown(path)));
  listener.path_ = p;
  struct stat st;
  if (lstat(p.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("lstat ", Shown(p)));
  listener.dev_ = st.st_dev;
  listener.ino_ = st.st_ino;
  if (chmod(p.c_str(), mode) != 0) return ErrnoStatus(errno, absl::StrCat("chmod ", Shown(p)));
  if (listen(listener.fd_.get(), kBacklog) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen ", Shown(p)));
  }
  return listener;
}

mode_t SocketModeFor(std::optional<mode_t> socket_mode) {
  return socket_mode.value_or(geteuid() == 0 ? 0666 : 0600);
}

mode_t SocketDirectoryModeFor(mode_t socket_mode) {
  return 0700 | ((socket_mode & S_IWGRP) != 0 ? S_IXGRP : 0) |
         ((socket_mode & S_IWOTH) != 0 ? S_IXOTH : 0);
}

std::string SocketDirectory(absl::string_view socket_path) {
  const size_t slash = socket_path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(socket_path.substr(0, slash));
}

std::string LockFilePath(absl::string_view socket_path) {
  return absl::StrCat(socket_path, ".lock");
}

namespace {

// The count in LISTEN_FDS when LISTEN_PID is this process (sd_listen_fds(3));
// nullopt when either is unset or empty, or LISTEN_PID is another
// process's. systemd writes both in decimal: anything else is refused,
// naming the variable, rather than read as a number. A count other than 1
// is refused too: here, so that whichever reads it first (a check made
// before the broker takes its socket, or FromSystemd) says so.
absl::StatusOr<std::optional<int>> PassedSockets(absl::string_view pid_text,
                                                  absl::string_view fds_text) {
  if (pid_text.empty() || fds_text.empty()) return std::optional<int>();
  absl::StatusOr<uint64_t> pid = ParseDecimal("LISTEN_PID", pid_text, 1, INT_MAX);
  if (!pid.ok()) return pid.status();
  if (*pid != static_cast<uint64_t>(getpid())) return std::optional<int>();
  absl::StatusOr<uint64_t> count = ParseDecimal("LISTEN_FDS", fds_text, 0, INT_MAX);
  if (!count.ok()) return count.status();
  if (*count != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LISTEN_FDS=", *count, ": capbrokerd takes exactly one socket; give its .socket "
        "unit one ListenSequentialPacket= line"));
  }
  return std::optional<int>(1);
}

// The int socket option `option` (named `name`) of the socket passed by
// systemd at `fd`.
absl::StatusOr<int> SocketOption(int fd, int option, absl::string_view name) {
  int value = 0;
  socklen_t length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, option, &value, &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(", fd, ", ", name,
                                           "), of the socket passed by systemd"));
  }
  return value;
}

const char* EnvironmentOrEmpty(const char* name) {
  const char* value = getenv(name);
  return value == nullptr ? "" : value;
}

}  // namespace

absl::StatusOr<int> SystemdSocketCount() {
  absl::StatusOr<std::optional<int>> count =
      PassedSockets(EnvironmentOrEmpty("LISTEN_PID"), EnvironmentOrEmpty("LISTEN_FDS"));
  if (!count.ok()) return count.status();
  return count->value_or(0);
}

absl::StatusOr<std::optional<Listener>> Listener::FromSystemd() {
  const std::string pid_value = EnvironmentOrEmpty("LISTEN_PID");
  const std::string fds_value = EnvironmentOrEmpty("LISTEN_FDS");
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  unsetenv("LISTEN_PIDFDID");
  absl::StatusOr<std::optional<int>> count = PassedSockets(pid_value, fds_value);
  if (!count.ok()) return count.status();
  if (!count->has_value()) return std::optional<Listener>();  // none, or another process's
  int fd = kSystemdFirstFd;
  if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
    // Nothing at fd 3: not a unit's doing, which always passes its socket.
    return absl::InvalidArgumentError(
        "LISTEN_FDS=1 but fd 3 is not open: whatever set LISTEN_FDS passed no socket; "
        "start capbrokerd without LISTEN_FDS and LISTEN_PID to bind its own");
  }
  CB_ASSIGN_OR_RETURN(const int type, SocketOption(fd, SO_TYPE, "SO_TYPE"));
  CB_ASSIGN_OR_RETURN(const int domain, SocketOption(fd, SO_DOMAIN, "SO_DOMAIN"));
  CB_ASSIGN_OR_RETURN(const int accepting, SocketOption(fd, SO_ACCEPTCONN, "SO_ACCEPTCONN"));
  if (type != SOCK_SEQPACKET || domain != AF_UNIX) {
    return absl::InvalidArgumentError(
        "the socket passed by systemd (fd 3) is not a listening AF_UNIX "
        "SOCK_SEQPACKET socket; use ListenSequentialPacket= in the .socket unit");
  }
  if (!accepting) {
    sockaddr_un peer = {};
    socklen_t peer_length = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0) {
      // The right kind, connected: systemd accepted a connection and
      // started an instance for it, which is what Accept=yes does.
      return absl::InvalidArgumentError(
          "the socket passed by systemd (fd 3) is a connected socket, not a listening one: "
          "the .socket unit has Accept=yes; capbrokerd needs Accept=no (the default)");
    }
    if (errno == ENOTCONN) {
      // Not from a .socket unit, which listens on what it binds: whatever
      // set LISTEN_FDS passed a socket it never called listen(2) on.
      return absl::InvalidArgumentError(
          "the socket passed as fd 3 (LISTEN_FDS) is neither listening nor connected: "
          "capbrokerd needs a listening socket (ListenSequentialPacket= in a .socket unit, "
          "with Accept=no), or start it without LISTEN_FDS and LISTEN_PID to bind its own");
    }
    return ErrnoStatus(errno, "getpeername(3), of the socket passed by systemd");
  }
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return ErrnoStatus(errno, "fcntl(3, FD_CLOEXEC)");
  CB_RETURN_IF_ERROR(SetNonBlocking(fd, true));
  // Requests carry no control messages: with credentials passed (the unit's
  // PassCredentials=...), every request would read as one carrying fds.
  CB_RETURN_IF_ERROR(wire::StopCredentialMessages(fd));
  Listener listener;
  listener.fd_.reset(fd);
  // Refused already when its unit says AcceptFileDescriptors=no.
  absl::StatusOr<bool> took = wire::TakesFds(fd);
  listener.took_fds_ = took.ok() && *took;
  if (!took.ok() || *took) CB_RETURN_IF_ERROR(listener.RefuseFds());
  return std::optional<Listener>(std::move(listener));
}

absl::Status Listener::RefuseFds() {
  fd_refusal_ = wire::RefuseFds(fd_.get());
  // Only a kernel that cannot is tolerated (with a warning at start).
  if (fd_refusal_.code() == absl::StatusCode::kUnimplemented) return absl::OkStatus();
  return fd_refusal_;
}

void Listener::RemoveSocketFile() {
  struct stat st;
  if (!path_.empty() && lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    unlink(path_.c_str());
  }
}

void Listener::StopListening() {
  if (!fd_) return;
  // The file first: a client finds no socket (ENOENT) rather than one
  // nobody listens on, and no other broker can bind the path meanwhile:
  // the lock is still held.
  RemoveSocketFile();
  fd_.reset();
}

Listener::~Listener() {
  if (fd_) RemoveSocketFile();
  struct stat st;
  // Still locked here (lock_ is closed after this body): a broker that opened
  // the file meanwhile finds, once it gets the lock, that the file at the
  // path is gone or another one, and tries again (TakeLock).
  struct stat held;
  if (lock_ && fstat(lock_.get(), &held) == 0 && lstat(lock_path_.c_str(), &st) == 0 &&
      st.st_dev == held.st_dev && st.st_ino == held.st_ino) {
    unlink(lock_path_.c_str());
  }
}

}  // namespace capbroker::server
