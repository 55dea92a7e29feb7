// Channel: a blocking, message-at-a-time endpoint of a SEQPACKET connection,
// for clients, services and tests. The broker uses the non-blocking pieces
// (datagram.h, framing.h) directly.
//
// Not thread-safe: one thread uses a channel at a time.
#ifndef CAPBROKER_SDK_WIRE_CHANNEL_H_
#define CAPBROKER_SDK_WIRE_CHANNEL_H_

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/datagram.h"

namespace capbroker::wire {

// A received message and the fds of its datagram. The reader belongs to the
// channel and reads its buffer: an Incoming is valid until the channel's
// next Receive().
struct Incoming {
  capnp::FlatArrayMessageReader* reader = nullptr;
  std::vector<UniqueFd> fds;
  // The datagram carried more fds than `fds` holds (Datagram::fds_cut):
  // only on a channel made with FdPolicy::kAcceptWhatFits (or kRefuse).
  bool fds_cut = false;
  // The datagram's length in bytes.
  size_t bytes = 0;
};

class Channel {
 public:
  // Takes ownership of a connected SOCK_SEQPACKET socket, whose datagrams
  // Receive takes with `fd_policy` (datagram.h). The default, kAccept,
  // fails a datagram whose fds did not all fit with kDataLoss (close the
  // connection); with kAcceptWhatFits it arrives with Incoming::fds_cut,
  // and the caller checks the fds against what the message lists.
  explicit Channel(UniqueFd fd, FdPolicy fd_policy = FdPolicy::kAccept);

  // A channel moves with its socket and buffer. Send and Receive on the
  // one moved from fail with kFailedPrecondition.
  Channel(Channel&&) = default;
  Channel& operator=(Channel&&) = default;

  // Sends `message` with `fds` (borrowed) as one datagram. kUnavailable
  // when the peer is gone, or when a non-blocking socket is full;
  // kDeadlineExceeded, nothing sent, when a blocking socket's send timeout
  // (SO_SNDTIMEO) passed first.
  absl::Status Send(capnp::MessageBuilder& message,
                    absl::Span<const int> fds = {});

  // Receives the next message; its framing has been validated and the reader
  // carries capbroker's limits. Reading fields can still throw kj exceptions
  // on a malformed message: read them under CatchKj. kUnavailable when the
  // peer closed the connection, or when a non-blocking socket is empty;
  // kDeadlineExceeded when a blocking socket's receive timeout
  // (SO_RCVTIMEO) passed with nothing to read; kDataLoss when the fds did
  // not all fit, unless the channel takes what fits (see the constructor);
  // otherwise ReceiveDatagram's and ValidateFraming's errors (the latter
  // marked MalformedDatagram).
  absl::StatusOr<Incoming> Receive();

  // The socket, still owned by the channel (for poll()); -1 once closed.
  int fd() const { return fd_.get(); }

  // How Receive takes the fds of a datagram (the constructor's).
  FdPolicy fd_policy() const { return fd_policy_; }

  // Closes the socket, for a peer that can no longer be trusted to be in
  // step. Send and Receive fail after it (EBADF).
  void Close() { fd_.reset(); }

 private:
  // Received messages are read in place, without an allocation per message;
  // on the heap, once, because readers cannot move and channels must.
  struct ReaderSlot {
    std::optional<capnp::FlatArrayMessageReader> reader;
  };

  // kFailedPrecondition once this channel was moved from (buffer_ is null).
  absl::Status CheckNotMovedFrom() const;

  UniqueFd fd_;
  FdPolicy fd_policy_;
  std::unique_ptr<ReceiveBuffer> buffer_;  // null once moved from
  std::unique_ptr<ReaderSlot> slot_;
};

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_CHANNEL_H_
