// The broker's listening socket: made at a path, or inherited from systemd.
//
// Permissions are deliberate. A broker run as root serves every local user
// (the policy decides who gets what, as for the D-Bus system bus): its
// socket is 0666. A broker run by a user serves only that user: socket
// 0600. `socket_mode` overrides the socket's mode. A directory the broker
// creates lets in whom the socket does: 0700, and search permission (x,
// never r or w) for group and others where the socket's mode lets them
// connect (w): 0711 for a root broker's default, 0700 for a user's. The
// socket file is bound under umask 0177 and then chmod-ed, so it is never
// reachable more widely than intended.
//
// A socket file left by a broker that died is replaced; a live broker on the
// same path is never displaced; anything else at the path is left alone. The
// probe that tells them apart never waits on a listener whose queue of
// connections not yet accepted is full: that one is live.
//
// Two brokers started at the same moment on one path must not both believe
// they serve it: without coordination the second can probe the first's
// socket after its bind and before its listen (connect fails: it looks
// stale), unlink it, and bind its own, leaving the first listening on a
// socket no client can reach. So Bind takes a lock first: the file
// `<path>.lock` (mode 0600), locked with flock(LOCK_EX | LOCK_NB) and held
// for the listener's lifetime, across the probe, the unlink of a stale
// socket, bind and listen. A second broker fails at once with kAlreadyExists
// ("another capbrokerd holds the lock"). The kernel drops the lock when the
// broker dies however it dies, so a crash leaves no stale lock, only the
// file, which the next broker reuses. A socket inherited from systemd needs
// no lock: systemd owns its path.
//
// Whoever can write to the socket's directory can unlink or rename the
// broker's socket and bind one of their own at its name; clients would then
// hand their requests to an impostor and trust the fds it sends. So an
// existing directory must be owned by root or the broker's euid and writable
// by no one else. A sticky bit (as on /tmp) does not make it acceptable: it
// keeps others from removing the broker's entries, not from taking a name
// first (binding the socket path, or creating the lock file, before the
// broker starts). The path to it is walked one name at a time, as for the
// policy file (broker/util/trusted_path.h): every directory on the way must
// be owned by root or the broker's euid and not writable by others unless
// sticky (those can only rename what they hold, and a sticky directory keeps
// them from renaming ours), and every symlink on the way must be owned by
// root or the broker's euid, since its owner could re-point it at a
// directory of their own after the broker has started.
//
// The broker takes no fds from clients, and its listening socket refuses
// them (wire::RefuseFds, Linux 6.16): a connection takes that from its
// listener when the client connects, so a client's sendmsg with fds fails
// (EPERM) from its first datagram on, and the broker never drops a client's
// file (see wire::FdPolicy for why dropping one can stall it). Bind sets it
// before listen(). A socket from systemd is set when the broker takes it,
// unless its unit set it already (AcceptFileDescriptors=no, systemd 258):
// connections made before that, while no broker ran, may hold fds
// (BrokerLoop::Admit deals with them).
#ifndef CAPBROKER_BROKER_SERVER_LISTENER_H_
#define CAPBROKER_BROKER_SERVER_LISTENER_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/peer/unmapped_ids.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::server {

// The check made on the socket's directory, given its stat `st`, for a broker
// running as `euid`: a directory owned by root or `euid`, writable by neither
// group nor others (sticky or not). The error names the path (`dir`, as
// shown), owner and mode; for a directory others may write, `writable_fix`
// ("" for none) follows: what to do depends on what named the path (see
// SocketFlagDirectoryFix). Exposed so that the rule can be tested for any
// owner (tests cannot always chown).
absl::Status CheckSocketDirectoryStat(absl::string_view dir, const struct stat& st,
                                      uid_t euid, absl::string_view writable_fix);

// What to do about the socket directory `dir_path` (as configured, as the
// admin types it), of stat `st`, that others may write, for a socket that
// --socket names (`socket_name`, its own name; "" when not known): for a
// sticky directory such as /tmp, a directory of the broker's own inside it,
// never a chmod of the shared one; otherwise util's
// NonStickyWritableDirectoryHint. Not for a socket from systemd, whose
// directory the unit's ListenSequentialPacket= names.
std::string SocketFlagDirectoryFix(absl::string_view dir_path, const struct stat& st,
                                   uid_t euid, absl::string_view socket_name);

// Whether users other than the socket's and its directories' owners and
// groups can connect to the socket at `path`: every directory on the way
// (symlinks resolved) must let others search it (o+x), and the socket let
// them write (o+w), which connect(2) needs. kFailedPrecondition naming the
// first that does not, with its mode. Only the "other" bits are read (ACLs
// are not), so this is for a warning, not a rule: a root broker meant for
// every local user (socket mode with o+w, the default) whose clients of
// other uids would get "Permission denied" from connect, which reads as a
// policy denial, says so at start (daemon.cc).
absl::Status CheckReachableByOthers(absl::string_view path);

// What FindSocketBlocker found in the way, and where: the advice differs.
// Only the socket's own directory, or the socket, can give one group its
// way in (a setgid directory gives the socket its group); a directory above
// it keeps that group out too.
struct SocketBlocker {
  enum class Where { kDirectoryAbove, kSocketDirectory, kSocket };
  Where where = Where::kSocket;
  std::string path;  // the directory (symlinks resolved), or the socket
  absl::Status why;  // kFailedPrecondition: what keeps whom out, with the mode
  // The command that lets them past `path`: "chmod o+x DIR", "chmod g+x
  // DIR", or for a directory of another group "chgrp GID DIR && chmod g+x
  // DIR"; for the socket, the chmod of its w bit (which lasts until the
  // broker makes its socket again: say --socket-mode instead).
  std::string fix;
};
// nullopt when the users meant can reach the socket at `path`; an error when
// a directory or the socket cannot be stat'ed. With no `group`, the users
// meant are all the others (CheckReachableByOthers): every directory on the
// way (symlinks resolved) needs o+x and the socket o+w. With a `group` (the
// socket's, for a socket meant for one group: --socket-mode 0660), they are
// that group's members who own none of these files: each needs the group
// bit where its group is `group` (g+x, the socket g+w) and the other bit
// where its group is another (the kernel applies the first class that
// fits: owner, group, other). Only the mode bits are read (not ACLs, nor a
// member's other groups): this is for warnings that the users meant are
// kept out. Whether anyone more gets in is the other question, asked of a
// socket from systemd (CheckSocketModeFromSystemd) by the same reading of
// the same files.
absl::StatusOr<std::optional<SocketBlocker>> FindSocketBlocker(
    absl::string_view path, std::optional<gid_t> group = std::nullopt);

// For a broker run by a user (not root), which serves that user alone, as
// Bind makes its socket (0600 in a 0700 directory): OK when other users
// cannot connect to the listening socket `fd` (borrowed), one systemd
// passed, whose permissions are the unit's. Who can connect is decided as
// CheckSocketModeFromSystemd decides it, with the socket's group let in
// when a SocketGroup= chose it: when it is neither the broker's primary
// group (getegid: a user unit's default, which others may share) nor root's
// (a system unit's default): any other user, member of
// another group, or owner of the socket or of a directory on the way is
// refused. kFailedPrecondition, naming who gets in and saying how to fix
// the unit, when one can: an abstract socket (anyone in the network
// namespace may connect), or a path open to more (systemd's defaults are
// SocketMode=0666 and DirectoryMode=0755). Fail closed: an address or path
// that cannot be told or stat'ed is kFailedPrecondition too (a path not
// visible in the broker's mount namespace says so). The overflow uid of a
// partial id map (`unmapped`, as the broker read it at start) counts as no
// one: a peer reading as it is refused at admission anyway.
absl::Status CheckOthersCannotConnect(int fd, const peer::UnmappedIds& unmapped = {});

// The path the unix socket `fd` (borrowed) is bound to, as getsockname
// reports it: for a socket from systemd, the path of its unit's
// ListenSequentialPacket=. "" for an abstract socket (a leading NUL) or an
// unnamed one. An error when getsockname fails.
absl::StatusOr<std::string> BoundSocketPath(int fd);

// For the listening socket `fd` (borrowed) that systemd passed: the check
// Bind makes of the directory it binds in (util::OpenParent's walk, then
// CheckSocketDirectoryStat), on the path the socket is bound to. Whoever
// may rename names in that directory (its owner, or anyone who may write
// to it, unless sticky) or in one above it, or re-point a symlink on the
// way, can move the unit's socket away and bind one of their own at its
// path. kFailedPrecondition naming the path, what is wrong and the unit's
// ListenSequentialPacket= to change; kNotFound for a path the broker
// cannot see. OK for an abstract socket, which has no directory (whom it
// lets in is CheckOthersCannotConnect's and CheckSocketModeFromSystemd's
// to say).
absl::Status CheckSocketDirectoryFromSystemd(int fd);

// For a socket from systemd when --socket-mode says `socket_mode`: the
// unit, not the broker, made the socket, so the flag cannot set its mode;
// it is checked instead. OK when the socket at its bound path lets in no
// one that a socket of `socket_mode` owned by the broker's user (`euid`)
// would keep out: with o+w, everyone is meant; with g+w, the broker's user
// and the members of the socket's group; else the broker's user alone
// (root gets in anyway). Who gets in is read from the mode bits of every
// directory on the way (symlinks resolved; search, x) and of the socket
// (write, w: connect(2) takes it), as the kernel applies them: the owner's
// class, the group's, the others'. The owner of any of these files, other
// than root or `euid`, is let past it whatever its mode (it may chmod it);
// whose groups a user is in is not known, so a user may be in any group
// but the one allowed. So a 0666 socket (systemd's default) in a 0700
// directory lets in no one else only when root or the broker's user owns
// that directory; in a 0750 one, the members of its group get in too; a
// directory of another user lets that user in. kFailedPrecondition naming
// both modes, the socket's owner, and who else gets in, and saying to set
// SocketMode= (and SocketUser=) in the .socket unit, or to use a directory
// of root's or the broker's user of the mode that lets in no more; for an
// abstract socket (anyone in the network namespace may connect) unless
// `socket_mode` has o+w; and, failing closed, when the socket's address or
// a file on the way cannot be told: a path not visible in the broker's
// mount namespace (the service's PrivateTmp=, a container) says so, and
// what to do. The overflow uid of a partial id map (`unmapped`) counts as
// no one, as for CheckOthersCannotConnect.
absl::Status CheckSocketModeFromSystemd(int fd, mode_t socket_mode, uid_t euid,
                                        const peer::UnmappedIds& unmapped = {});

// The mode Listener::Bind gives its socket: `socket_mode`, or by default
// 0666 for a broker run as root and 0600 for one run by a user.
mode_t SocketModeFor(std::optional<mode_t> socket_mode);

// The mode of a socket directory Listener::Bind creates for a socket of
// mode `socket_mode`: 0700, with group and others' search permission (x)
// where the socket's mode gives them write (w), which connect(2) needs.
mode_t SocketDirectoryModeFor(mode_t socket_mode);

// The directory part of `socket_path`, as named: "." for a bare name, "/"
// for one in the root directory.
std::string SocketDirectory(absl::string_view socket_path);

// The lock file Listener::Bind takes for the socket at `socket_path`:
// `<socket_path>.lock`.
std::string LockFilePath(absl::string_view socket_path);

// The first fd of the sockets systemd passes (SD_LISTEN_FDS_START).
inline constexpr int kSystemdFirstFd = 3;

// How many sockets systemd passed this process (from kSystemdFirstFd on):
// 1 when LISTEN_PID is this process, else 0. Read as Listener::FromSystemd
// reads them, with its refusals (kInvalidArgument): a LISTEN_PID or
// LISTEN_FDS that is not a decimal number (a check made on a count it made
// up, 0, could let the broker take systemd's socket for something else
// before FromSystemd refused the same text), and a count other than 1,
// which is then the first error the broker reports. Leaves the variables
// for FromSystemd. For the checks made before the broker takes its socket:
// --ready-fd must not be systemd's socket (daemon.cc), --socket must not
// be given (daemon/flags.h).
absl::StatusOr<int> SystemdSocketCount();

class Listener {
 public:
  // Binds and listens on `path`, creating its directory (one level) if
  // needed. kAlreadyExists when a broker already listens there;
  // kInvalidArgument for a path sun_path cannot hold; kNotFound when the
  // directory's parent does not exist; kFailedPrecondition when the
  // directory, one on the way to it, or a symlink on the way, could be
  // changed by another user. Another broker holding the lock is
  // kAlreadyExists too.
  static absl::StatusOr<Listener> Bind(absl::string_view path,
                                       std::optional<mode_t> socket_mode);

  // The socket systemd passed (LISTEN_PID is us, LISTEN_FDS is 1, fd 3 is a
  // listening AF_UNIX SOCK_SEQPACKET socket), or nullopt when the process was
  // not socket-activated. Clears the LISTEN_* variables either way, so that
  // children never see them. kInvalidArgument for a LISTEN_PID or
  // LISTEN_FDS that is not a decimal number (sdk/base/decimal.h: systemd
  // writes nothing else), for a count other than 1 and, with the fix in
  // the unit, for another kind of socket (ListenSequentialPacket=), a
  // connected one (Accept=yes: capbrokerd needs Accept=no), or one neither
  // listening nor connected (passed by something other than a .socket unit).
  static absl::StatusOr<std::optional<Listener>> FromSystemd();

  Listener(Listener&&) = default;
  Listener& operator=(Listener&&) = default;
  // Removes the socket file, if this listener made it and it is still the
  // same file, then the lock file (still holding the lock; see Bind's lock
  // loop for why that is safe), and releases the lock.
  ~Listener();

  // For the broker's stop, once it serves no more: closes the listening
  // socket and removes its file (as the destructor does), keeping the lock
  // until the listener is destroyed. A client that connects from then on
  // is refused at once (ECONNREFUSED, or ENOENT once the file is gone)
  // rather than queued, unanswered, while the services stop. A socket from
  // systemd stays open in systemd, which queues such clients for the next
  // start. fd() is -1 afterwards.
  void StopListening();

  int fd() const { return fd_.get(); }
  // The path bound, empty for an inherited socket.
  const std::string& path() const { return path_; }
  // OK when the socket refuses fds; kUnimplemented, saying why, on a kernel
  // that cannot (before Linux 6.16): the broker must then discard what
  // clients send, which a client can make stall it (daemon.cc warns).
  const absl::Status& fd_refusal() const { return fd_refusal_; }
  // An inherited socket that took fds until the broker turned that off:
  // connections made before may hold some.
  bool took_fds() const { return took_fds_; }

 private:
  Listener() = default;
  // Removes the socket file, if this listener made it and it is still the
  // same file.
  void RemoveSocketFile();
  // Turns fd-passing off on fd_ and records how that went in fd_refusal_;
  // an error, other than a kernel that cannot, stops the broker.
  absl::Status RefuseFds();

  // Declared first, so destroyed last: the lock outlives the socket.
  UniqueFd lock_;  // `<path>.lock`, flock-ed; empty for an inherited socket
  std::string lock_path_;
  UniqueFd fd_;
  std::string path_;
  absl::Status fd_refusal_;
  bool took_fds_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_LISTENER_H_
