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
  std::optional<mode_t> socket_mode;       // --socket-mode OCTAL
  std::string audit_log_path;              // --audit-log FILE (else stderr)
  std::optional<int> ready_fd;             // --ready-fd N
  server::Limits limits;                   // --max-connections[-per-uid] N,
                                           // --max-queued-reply-bytes N
  std::string cgroup_dir;                  // --cgroup DIR (services' cgroups)
  bool help = false;                       // --help
};

// The usage text printed by --help and after a usage error.
const char* Usage();

// Parses `args` (without argv[0]). kInvalidArgument with one line naming
// the bad argument.
absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_FLAGS_H_
