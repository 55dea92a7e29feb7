// ServeThenStop: capbrokerd's serving and its stop, the part of RunDaemon
// that runs once everything is set up.
#ifndef CAPBROKER_BROKER_DAEMON_SERVE_H_
#define CAPBROKER_BROKER_DAEMON_SERVE_H_

#include <functional>

#include "absl/status/status.h"
#include "broker/audit/audit_log.h"
#include "broker/server/broker_loop.h"
#include "broker/service/service_host.h"

namespace capbroker::daemon {

// Serves clients of `listener` with `loop` until `on_control` (called when
// `control_fd`, the signalfd, is readable) says to stop (BrokerLoop::Serve)
// or until the loop fails (epoll failing, the signalfd unusable, or an
// audit log on stderr whose reader is gone: AuditLog::reader_gone), then
// stops the broker, the same way either way: stops accepting
// (`stop_listening`, which closes `listener`: clients that connect during
// the stop are refused at once, not left waiting for an answer that never
// comes), answers the connects still
// waiting for a service and stops the services (ServiceHost::StopAll),
// sends what is queued (BrokerLoop::SendWhatIsQueued), logs the count of
// lines about clients still suppressed (BrokerLoop::LogSuppressedPeerLines),
// and writes the audit log's last lines (AuditLog::FlushAll). Blocks while the services stop.
// Returns the loop's error, logged when it happened, once the broker has
// stopped. All borrowed.
absl::Status ServeThenStop(server::BrokerLoop& loop, int listener,
                           const std::function<void()>& stop_listening, int control_fd,
                           const std::function<bool()>& on_control,
                           service::ServiceHost& services, audit::AuditLog& audit);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_SERVE_H_
