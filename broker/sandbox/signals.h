// The service's signal state: what it would otherwise inherit from the broker.
//
// A blocked signal stays blocked across execve, and an ignored one stays
// ignored: the broker blocks SIGTERM, SIGINT and SIGHUP (it reads them from a
// signalfd) and ignores SIGPIPE, none of which a service should start with.
#ifndef CAPBROKER_BROKER_SANDBOX_SIGNALS_H_
#define CAPBROKER_BROKER_SANDBOX_SIGNALS_H_

#include "absl/status/status.h"

namespace capbroker::sandbox {

// Every signal back to its default action, then none blocked (in that order,
// so that no broker handler can run in the child in between).
absl::Status ResetSignals();

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_SIGNALS_H_
