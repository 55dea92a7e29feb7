#include "broker/daemon/serve.h"

#include <cstdio>

#include "sdk/base/status_macros.h"

namespace capbroker::daemon {

absl::Status ServeThenStop(server::BrokerLoop& loop, int listener, int control_fd,
                           const std::function<bool()>& on_control,
                           service::ServiceHost& services, audit::AuditLog& audit) {
  CB_RETURN_IF_ERROR(loop.Serve(listener, control_fd, on_control));
  std::fprintf(stderr, "capbrokerd: stopping\n");
  // Answers every connect still waiting for a service ("the broker is
  // stopping", on record as not delivered), then stops the services.
  services.StopAll();
  // Those answers, and whatever else is queued, go out now, after their
  // audit lines; then the log's last lines.
  loop.SendWhatIsQueued();
  audit.FlushAll();  // the counts of suppressed denials still waiting
  return absl::OkStatus();
}

}  // namespace capbroker::daemon
