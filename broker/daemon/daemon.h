// Running capbrokerd: load the policy, listen, serve until told to stop.
#ifndef CAPBROKER_BROKER_DAEMON_DAEMON_H_
#define CAPBROKER_BROKER_DAEMON_DAEMON_H_

#include "absl/status/status.h"
#include "broker/daemon/flags.h"

namespace capbroker::daemon {

// Runs the broker with `flags` until SIGTERM or SIGINT. Any error before
// serving (a bad policy, a socket in use, an unwritable audit log) is
// returned and the broker never serves: fail closed. Blocks SIGTERM, SIGINT
// and SIGHUP, and ignores SIGPIPE and SIGXFSZ, for the whole process.
absl::Status RunDaemon(const DaemonFlags& flags);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_DAEMON_H_
