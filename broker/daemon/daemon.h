// Running capbrokerd: load the policy, listen, serve until told to stop.
#ifndef CAPBROKER_BROKER_DAEMON_DAEMON_H_
#define CAPBROKER_BROKER_DAEMON_DAEMON_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "broker/daemon/flags.h"
#include "broker/server/broker_loop.h"

namespace capbroker::daemon {

// Runs the broker with `flags` until SIGTERM or SIGINT. Any error before
// serving (a bad policy, a socket in use, an unwritable audit log, a
// --ready-fd that was not inherited, a /proc of another pid namespace:
// environment.h) is returned and the broker never
// serves: fail closed. Call it before the process opens any fd beyond 0 to 2
// (main does), so that it can tell an inherited --ready-fd from one of its
// own. Blocks SIGTERM, SIGINT and SIGHUP, and ignores SIGPIPE and SIGXFSZ,
// for the whole process, before anything else: one of them arriving while
// the broker starts is handled once it serves, and never kills it. Sets
// SIGCHLD to its default action (an inherited SIG_IGN would reap its
// services before it could learn how they ended).
absl::Status RunDaemon(const DaemonFlags& flags);

// Raises the soft RLIMIT_NOFILE to the hard limit (RunDaemon does, at
// start). When the limit is still below what one uid can make the broker
// hold (`limits`' max_connections_per_uid + max_queued_fds_total, plus the
// broker's own fds and those of `services` hosted services), warns on
// stderr, naming the flags and LimitNOFILE=, and returns the warning;
// otherwise returns "". Only a warning: the flags say what the
// administrator asked for, and lowering a quota behind their back would
// make the broker refuse clients for a reason nobody chose; the warning
// names both fixes.
std::string RaiseFdLimit(const server::Limits& limits, size_t services);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_DAEMON_H_
