#include "sdk/service/try_accept.h"

#include <poll.h>

#include <utility>

#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker {
namespace {

// Whether the peer of socket `fd` (borrowed) has closed or reset it.
bool HungUp(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (RetryEintr([&] { return poll(&p, 1, 0); }) < 0) return true;
  return (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

}  // namespace

bool AcceptWithoutReadiness(const Client& broker) {
  return broker.queued_incoming() > 0 || broker.fd() < 0;
}

absl::StatusOr<std::optional<IncomingConnection>> TryAccept(Client& broker) {
  const int fd = broker.fd();
  if (fd >= 0) {
    CB_RETURN_IF_ERROR(SetNonBlocking(fd, true));
  }
  absl::StatusOr<IncomingConnection> next = broker.NextIncoming();
  // A Client closes its fd after a protocol error (this one or an earlier
  // one, which NextIncoming reported): there is nothing to restore.
  if (broker.fd() < 0) return next.status();
  CB_RETURN_IF_ERROR(SetNonBlocking(fd, false));
  if (next.ok()) return std::optional<IncomingConnection>(std::move(next).value());
  if (next.status().code() != absl::StatusCode::kUnavailable || HungUp(fd)) {
    return next.status();
  }
  return std::optional<IncomingConnection>();
}

}  // namespace capbroker
