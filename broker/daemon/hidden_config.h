// What of the broker's own its services must not reach, and the launchers
// that keep it from them.
//
// A service's minimal root binds /etc whole, and Landlock lets it read
// there: the policy file (/etc/capbroker/policy.capnp, 0644 as the README
// has it) would be readable by every service, and it names every service,
// every capability's path and every principal's uid. capbrokerd therefore
// launches services with these paths hidden (sandbox::SandboxSpec::
// hidden_paths): an empty read-only file or directory mounted over each.
// The broker's socket, and its lock file, are hidden likewise: a service
// whose root holds them could connect to the broker by that path
// (SocketLocation).
//
// A directory grant is another way in: it reaches the service as a clone of
// the host's directory with everything beneath it, where nothing is hidden.
// Granted the directory of the policy file, or any directory above it, a
// service reads the policy; granted the one of the broker's socket, or
// above, it connects to the broker by that path, as a client known by its
// uid (matching anyUser principals) rather than as the service it is. So a
// service whose directory grant holds either does not start (fail closed):
// its start is refused with kFailedPrecondition, which fails the same way
// until the policy changes (the service is failed until a reload). The fds
// of its start grants are checked once made and before any is on record
// (service::HostOptions::check_grant; the refusal is on record as a
// denial). The directories are told by device and inode, so that a bind
// mount of one, or a path to it through a symlink, is caught too; the
// policy's are found again at every reload.
#ifndef CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_
#define CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/sandbox/sandbox.h"
#include "broker/service/service_host.h"

namespace capbroker::daemon {

// Where the README puts the broker's configuration; hidden whether or not
// the policy in use lies there.
inline constexpr char kConfigDirectory[] = "/etc/capbroker";

// kConfigDirectory and the policy file at `policy_path`, by its canonical
// path (absolute, every symlink resolved): the path at which a service's
// root holds it, when it lies in /etc or a system directory. Resolved when
// the policy is loaded (LocatePolicy): a symlink of root's on the way (the
// trusted-path checks allow no other) may be re-pointed between reloads.
absl::StatusOr<std::vector<std::string>> ConfigPathsToHide(absl::string_view policy_path);

// A directory no service may be granted, because it holds something of the
// broker's.
struct GuardedDirectory {
  dev_t dev = 0;
  ino_t ino = 0;
  std::string path;  // its canonical path, for messages
  // What it holds and why that matters, with what to do instead: the end
  // of the refusal, after "directory grant 'NAME' is PATH, which holds ".
  std::string holds;
};

// What a directory grant that holds the broker's policy file, socket or
// audit log would expose, and what to do instead.
enum class BrokerFile { kPolicy, kSocket, kAuditLog };

// Every directory from the one holding the file at `path` up to "/", found
// by the file's canonical path (realpath) and stat'ed now, each said to
// hold the file as `kind`. Called at start, on paths the broker's
// trusted-path checks have walked already. An error when `path` cannot be
// resolved or a directory on it stat'ed.
absl::StatusOr<std::vector<GuardedDirectory>> DirectoriesHolding(absl::string_view path,
                                                                 BrokerFile kind);

// What of the policy file's is guarded, found from its path as it resolves
// when the policy is loaded: at start, and again at every reload, since
// root may have re-pointed a symlink on the way (`ln -sfn v2 current`) and
// the policy then lies in another directory.
struct PolicyLocation {
  std::vector<std::string> hidden;             // ConfigPathsToHide
  std::vector<GuardedDirectory> directories;   // DirectoriesHolding, kPolicy
};
absl::StatusOr<PolicyLocation> LocatePolicy(absl::string_view policy_path);

// What of the broker's socket is guarded, for as long as the broker runs.
// Landlock (before ABI 9) cannot stop a connect() to a pathname socket, and
// the seccomp filter lets a service create unix sockets: a socket its root
// holds (one in /etc or a system directory, such as a /usr/local prefix's
// /usr/local/var/run) would let every service connect to the broker by that
// path, as a client known by its uid (matching anyUser principals). So the
// socket is hidden in every service's root under an empty read-only file
// (connect(2) then fails with EACCES, or for whoever may write the file
// ECONNREFUSED: it is no socket). So is the lock file beside a socket the
// broker bound: it is the broker's alone, and a service that could open it
// (a non-root broker runs services as its own uid, the lock file's owner)
// could flock it and keep the next broker from starting.
struct SocketLocation {
  std::vector<std::string> hidden;            // canonical paths: socket, lock file
  std::vector<GuardedDirectory> directories;  // DirectoriesHolding, kSocket
};

// The socket bound at `socket_path` and its lock file at `lock_path` (""
// for a socket from systemd, which has none), by their canonical paths.
// An error when either cannot be resolved or a directory stat'ed.
absl::StatusOr<SocketLocation> LocateSocket(absl::string_view socket_path,
                                            absl::string_view lock_path);

// What of the broker's audit log (--audit-log) is guarded, for as long as
// the broker runs: a service granted a directory that holds it could open it
// for writing (truncate it, forge lines) or read every peer's uid, pid and
// program. Its path is fixed: a SIGHUP reopens the log by the same path
// (after a rotation), in the same directories. The log is hidden in every
// service's root as well (one in /etc, or a system directory, would be
// readable there). Without --audit-log the lines go to stderr, which has
// no path and nothing to guard.
struct AuditLogLocation {
  std::string hidden;                         // the log's canonical path
  std::vector<GuardedDirectory> directories;  // DirectoriesHolding, kAuditLog
};

// The audit log at `path`, by its canonical path as it resolves now (the
// broker has opened, so created, it). An error when it cannot be resolved
// or a directory stat'ed.
absl::StatusOr<AuditLogLocation> LocateAuditLog(absl::string_view path);

// What of the broker's own no service may reach, as of the policy loaded
// last: the paths hidden in every service's root, and the directories no
// service may be granted (the policy's, and the socket's and the audit
// log's, which stay).
// Not thread-safe: the broker's event-loop thread owns it.
class ConfigGuard {
 public:
  explicit ConfigGuard(PolicyLocation policy) : policy_(std::move(policy)) {}

  // The broker's socket: hidden, and its directories guarded, for as long
  // as it runs.
  void AddSocket(SocketLocation socket);
  // The broker's audit log: likewise, for as long as it runs.
  void AddAuditLog(AuditLogLocation audit_log);
  // A reload installed the policy found at `policy`: launches from now on
  // hide and guard that, and no longer the directories found before.
  void SetPolicy(PolicyLocation policy) { policy_ = std::move(policy); }

  // The policy's hidden paths, then the socket's, then the audit log.
  std::vector<std::string> hidden() const;

  // kFailedPrecondition, naming the grant `name`, the directory, what it
  // holds and what to do, when `fd` (borrowed) is a guarded directory (by
  // device and inode; any directory fd, whatever kind of capability made
  // it, since every one reaches the service as its clone); else OK. The
  // type and ids come from the inode the fd holds, as cached (statx
  // AT_STATX_DONT_SYNC): no file system is asked.
  absl::Status CheckGrant(absl::string_view name, int fd) const;

 private:
  PolicyLocation policy_;
  SocketLocation socket_;
  AuditLogLocation audit_log_;  // empty without --audit-log
};

// `launch` with guard.hidden() added to the hidden_paths of every spec.
// Borrows `guard`, which must outlive the launcher; each launch reads it
// anew.
service::Launcher LauncherHiding(const ConfigGuard& guard, service::Launcher launch);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_
