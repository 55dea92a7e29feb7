// Telling a supervisor that the broker serves: a line on --ready-fd, and
// sd_notify("READY=1") when systemd set NOTIFY_SOCKET.
#ifndef CAPBROKER_BROKER_SERVER_READINESS_H_
#define CAPBROKER_BROKER_SERVER_READINESS_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::server {

// Writes `line` and a newline to `fd` and closes it (it is ours: inherited
// for this one purpose).
absl::Status NotifyReadyFd(int fd, absl::string_view line);

// Sends READY=1 to $NOTIFY_SOCKET (a path, or an abstract name when it
// starts with '@') if it is set; clears the variable either way.
absl::Status NotifySystemd();

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_READINESS_H_
