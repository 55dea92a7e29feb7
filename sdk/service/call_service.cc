#include "sdk/service/call_service.h"

#include <poll.h>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker::call_service_internal {

absl::StatusOr<wire::Incoming> Exchange(wire::Channel& channel, capnp::MessageBuilder& request,
                                        absl::Span<const int> fds, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a service call's timeout is ", absl::FormatDuration(timeout),
        "; it must be positive, or absl::InfiniteDuration() for no limit"));
  }
  if (channel.fd_policy() != wire::FdPolicy::kRefuse) {
    return absl::FailedPreconditionError(
        "a connection to a service must be a Channel made with wire::FdPolicy::kRefuse: "
        "its replies carry no fds");
  }
  // Exchange closes the channel after a timeout or a lost connection: a
  // later call says so rather than failing on fd -1.
  if (channel.fd() < 0) {
    return absl::UnavailableError(
        "the connection to the service was closed after an earlier error; open a new one");
  }
  // The kernel looks at the receiving socket's option when the service
  // sends: set before the request goes out, it covers the reply.
  CB_RETURN_IF_ERROR(wire::RefuseFdsWhereSupported(channel.fd()));
  const absl::Duration deadline = DeadlineAfter(timeout);
  // The socket reports room (POLLOUT) while its unread datagrams take at
  // most a quarter of its send buffer: a send then never waits.
  CB_ASSIGN_OR_RETURN(bool room, PollUntil(channel.fd(), POLLOUT, deadline));
  if (!room) {
    return absl::DeadlineExceededError(absl::StrCat("the service did not take the request within ",
                                                    absl::FormatDuration(timeout),
                                                    " (it is not reading)"));
  }
  absl::Status sent = channel.Send(request, fds);
  // A service that refused the connection (a limit) may have said why
  // before it closed it: that reply is still there to read.
  if (!sent.ok() && sent.code() != absl::StatusCode::kUnavailable) return sent;
  absl::StatusOr<bool> answered = PollUntil(channel.fd(), POLLIN, deadline);
  if (!answered.ok() || !*answered) {
    // The request went out: a reply read later would answer the next one.
    channel.Close();
    if (!answered.ok()) return answered.status();
    return absl::DeadlineExceededError(
        absl::StrCat("the service did not answer within ", absl::FormatDuration(timeout),
                     "; the connection is closed"));
  }
  absl::StatusOr<wire::Incoming> incoming = channel.Receive();
  if (!incoming.ok()) {
    if (incoming.status().code() == absl::StatusCode::kUnavailable) {
      // Closed here too, so that callers can tell a lost connection from
      // an error reply of code unavailable (the header says why).
      channel.Close();
      return absl::UnavailableError(
          absl::StrCat("the service closed the connection: ", incoming.status().message()));
    }
    return incoming.status();
  }
  // With kRefuse nothing is installed: fds that came (a kernel that cannot
  // refuse them at the socket) were discarded and show as fds_cut.
  if (incoming->fds_cut || !incoming->fds.empty()) {
    return absl::InternalError(
        "the service sent fds with its reply (discarded unopened); its replies carry none");
  }
  return incoming;
}

}  // namespace capbroker::call_service_internal
