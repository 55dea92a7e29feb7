// capbrokerd's command line.
#ifndef CAPBROKER_BROKER_DAEMON_FLAGS_H_
#define CAPBROKER_BROKER_DAEMON_FLAGS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/server/broker_loop.h"

namespace capbroker::daemon {

struct DaemonFlags {
  std::string policy_path;                 // --policy FILE (required)
  std::string socket_path;                 // --socket PATH (else default)
  std::optional<mode_t> socket_mode;       // --socket-mode OCTAL (1-4 digits)
  std::string audit_log_path;              // --audit-log FILE (else stderr)
  std::optional<int> ready_fd;             // --ready-fd N
  server::Limits limits;                   // --max-connections[-per-uid] N,
                                           // --max-queued-reply-bytes N
  std::string cgroup_dir;                  // --cgroup DIR (services' cgroups)
  bool help = false;                       // --help
};

// The usage text printed by --help and after a usage error.
const char* Usage();

// Parses `args` (without argv[0]) for a broker running as `euid`.
// kInvalidArgument with one line naming the bad argument, or a flag given
// twice (each may be given once: the last must not win unseen); for a
// broker not run as root, a --socket-mode without u+w too (connect(2) takes write
// permission: the broker's own user could not connect, and a socket of it
// left by a crash, which it cannot probe, would be hard to tell from a live
// one).
absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args, uid_t euid);

// The same for the process's own euid, then CheckSocketFlag for the
// sockets systemd passed it (server::SystemdSocketCount).
absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args);

// kInvalidArgument when `flags` name a --socket and systemd passed the
// socket (`socket_from_systemd`): the .socket unit's ListenSequentialPacket=
// sets its path, and a --socket the broker did not use would say it listens
// where it does not. OK with --help, which prints the usage whatever else is
// given. ParseFlags passes true only for a count systemd could have meant
// (exactly one socket): a count the broker refuses is reported at start as
// what it is (server::SystemdSocketCount), not as a --socket to leave out.
absl::Status CheckSocketFlag(const DaemonFlags& flags, bool socket_from_systemd);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_FLAGS_H_
