// What of the broker's own its services must not reach, and the launchers
// that keep it from them.
//
// A service's minimal root binds /etc whole, and Landlock lets it read
// there: the policy file (/etc/capbroker/policy.capnp, 0644 as the README
// has it) would be readable by every service, and it names every service,
// every capability's path and every principal's uid. capbrokerd therefore
// launches services with these paths hidden (sandbox::SandboxSpec::
// hidden_paths): an empty read-only file or directory mounted over each.
//
// A directory grant is another way in: it reaches the service as a clone of
// the host's directory with everything beneath it, where nothing is hidden.
// Granted the directory of the policy file, or any directory above it, a
// service reads the policy; granted the one of the broker's socket, or
// above, it connects to the broker by that path, as a client known by its
// uid (matching anyUser principals) rather than as the service it is. So a
// service whose directory grant holds either does not start (fail closed):
// its launch is refused with kFailedPrecondition, which fails the same way
// until the policy changes (the service is failed until a reload). The
// directories are told by device and inode, so that a bind mount of one, or
// a path to it through a symlink, is caught too.
#ifndef CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_
#define CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/service/service_host.h"

namespace capbroker::daemon {

// Where the README puts the broker's configuration; hidden whether or not
// the policy in use lies there.
inline constexpr char kConfigDirectory[] = "/etc/capbroker";

// kConfigDirectory and the policy file at `policy_path`, by its canonical
// path (absolute, every symlink resolved): the path at which a service's
// root holds it, when it lies in /etc or a system directory. Resolved once,
// at start: a symlink on the way that root re-points later is not followed
// again (the file itself may be replaced at will; reloads read the same
// path).
absl::StatusOr<std::vector<std::string>> ConfigPathsToHide(absl::string_view policy_path);

// `launch` with `hidden` added to the hidden_paths of every spec.
service::Launcher LauncherHiding(std::vector<std::string> hidden, service::Launcher launch);

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

// What a directory grant that holds the broker's policy file or socket
// would expose, and what to do instead.
enum class BrokerFile { kPolicy, kSocket };

// Every directory from the one holding the file at `path` up to "/", found
// by the file's canonical path (realpath) and stat'ed now, each said to
// hold the file as `kind`. Called at start, on paths the broker's
// trusted-path checks have walked already. An error when `path` cannot be
// resolved or a directory on it stat'ed.
absl::StatusOr<std::vector<GuardedDirectory>> DirectoriesHolding(absl::string_view path,
                                                                 BrokerFile kind);

// The path a listening unix socket (`fd`, borrowed) is bound to, as
// getsockname reports it (a socket from systemd); "" for an abstract or
// unnamed one, or when it cannot be told.
std::string BoundSocketPath(int fd);

// `launch` refusing a spec that passes a directory among `guarded` (by
// device and inode; any directory fd, whether announced as a directory or
// not, since every one reaches the service as its clone): the launch fails
// with kFailedPrecondition naming the grant, what it holds and what to do,
// and `launch` is not called. The type and ids come from the inode the fd
// holds, as cached (statx AT_STATX_DONT_SYNC): no file system is asked.
service::Launcher LauncherRefusingGuarded(std::vector<GuardedDirectory> guarded,
                                          service::Launcher launch);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_
