#include "sdk/wire/channel.h"

#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/framing.h"

namespace capbroker::wire {

Channel::Channel(UniqueFd fd, FdPolicy fd_policy)
    : fd_(std::move(fd)),
      fd_policy_(fd_policy),
      buffer_(std::make_unique<ReceiveBuffer>()),
      slot_(std::make_unique<ReaderSlot>()) {}

absl::Status Channel::CheckNotMovedFrom() const {
  if (buffer_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError("this Channel was moved from");
}

absl::Status Channel::Send(capnp::MessageBuilder& message,
                           absl::Span<const int> fds) {
  CB_RETURN_IF_ERROR(CheckNotMovedFrom());
  CB_ASSIGN_OR_RETURN(OutgoingFrame frame, OutgoingFrame::Of(message));
  CB_ASSIGN_OR_RETURN(bool sent, SendDatagram(fd_.get(), frame.iov(),
                                              frame.iov_count(), fds));
  if (!sent) {
    // EAGAIN: a non-blocking socket, or a blocking one whose send timeout
    // (SO_SNDTIMEO, set by whoever owns it) passed. Nothing was sent.
    CB_ASSIGN_OR_RETURN(bool non_blocking, IsNonBlocking(fd_.get()));
    if (non_blocking) return absl::UnavailableError("channel socket is non-blocking and full");
    return absl::DeadlineExceededError(
        "the datagram was not sent: the peer took nothing within the socket's send timeout "
        "(SO_SNDTIMEO)");
  }
  return absl::OkStatus();
}

absl::StatusOr<Incoming> Channel::Receive() {
  CB_RETURN_IF_ERROR(CheckNotMovedFrom());
  CB_ASSIGN_OR_RETURN(std::optional<Datagram> datagram,
                      ReceiveDatagram(fd_.get(), *buffer_, fd_policy_));
  if (!datagram.has_value()) {
    // EAGAIN: a non-blocking socket, or a blocking one whose receive
    // timeout (SO_RCVTIMEO) passed; the peer has closed nothing.
    CB_ASSIGN_OR_RETURN(bool non_blocking, IsNonBlocking(fd_.get()));
    if (non_blocking) return absl::UnavailableError("channel socket is non-blocking and empty");
    return absl::DeadlineExceededError(
        "nothing arrived within the socket's receive timeout (SO_RCVTIMEO)");
  }
  if (absl::Status framing = ValidateFraming(datagram->words); !framing.ok()) {
    return MalformedDatagram(std::move(framing));
  }
  Incoming incoming;
  slot_->reader.reset();
  incoming.reader = &slot_->reader.emplace(datagram->words, ReaderLimits());
  incoming.fds = std::move(datagram->fds);
  incoming.fds_cut = datagram->fds_cut;
  incoming.bytes = datagram->words.size() * sizeof(capnp::word);
  return incoming;
}

}  // namespace capbroker::wire
