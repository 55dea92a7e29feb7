#include "broker/daemon/serve.h"

#include <cstdio>
#include <string>

namespace capbroker::daemon {

absl::Status ServeThenStop(server::BrokerLoop& loop, int listener,
                           const std::function<void()>& stop_listening, int control_fd,
                           const std::function<bool()>& on_control,
                           service::ServiceHost& services, audit::AuditLog& audit) {
  const absl::Status served = loop.Serve(listener, control_fd, on_control);
  // Before anything that can take a while (StopAll waits up to the stop
  // timeout for each service): nobody new connects to a broker that will
  // not serve them.
  stop_listening();
  // A loop that fails stops the broker as a signal does: left to the
  // service host's destructor, the services would get SIGKILL at once and
  // their last output would go unread, waiting connects would get no
  // answer, and the counts of suppressed denials would never be written.
  if (served.ok()) {
    std::fprintf(stderr, "capbrokerd: stopping\n");
  } else if (audit.reader_gone()) {
    // Said once, by capbrokerd's main as it exits with the status: to a
    // stderr that is most likely the log's, and gone too.
  } else {
    std::fprintf(stderr, "capbrokerd: stopping: the event loop failed: %s\n",
                 std::string(served.message()).c_str());
  }
  // Answers every connect still waiting for a service ("the broker is
  // stopping", on record as not delivered), then stops the services.
  services.StopAll();
  // Those answers, and whatever else is queued, go out now, after their
  // audit lines; then the log's last lines.
  loop.SendWhatIsQueued();
  // The count of lines about clients suppressed since the last one logged
  // (sending may have added some): no later line will carry it.
  loop.LogSuppressedPeerLines();
  audit.FlushAll();  // the counts of suppressed denials still waiting
  return served;
}

}  // namespace capbroker::daemon
