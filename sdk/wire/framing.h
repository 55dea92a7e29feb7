// Cap'n Proto framing of one message in one datagram.
//
// The standard framing is a segment table (a 32-bit segment count minus one,
// then one 32-bit size in words per segment, padded to 8 bytes) followed by
// the segments. Cap'n Proto 0.9.2 trusts the table more than a broker can:
// ValidateFraming checks it against the datagram's length before any reader
// is built, so a forged count or size cannot make a reader allocate or read
// past the datagram.
#ifndef CAPBROKER_SDK_WIRE_FRAMING_H_
#define CAPBROKER_SDK_WIRE_FRAMING_H_

#include <sys/uio.h>

#include <array>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "capnp/message.h"
#include "kj/array.h"
#include "sdk/wire/limits.h"

namespace capbroker::wire {

// Checks that `words` holds exactly one well-framed message: at most
// kMaxSegments segments whose sizes add up to the bytes after the table.
// kInvalidArgument with the reason otherwise.
absl::Status ValidateFraming(kj::ArrayPtr<const capnp::word> words);

// Reader options with capbroker's traversal and nesting limits.
capnp::ReaderOptions ReaderLimits();

// The iovecs of a message ready to send: the segment table followed by the
// builder's segments, without copying them. Borrows the builder, which must
// outlive this object and must not change while it is in use.
class OutgoingFrame {
 public:
  // kResourceExhausted when the message is larger than kMaxMessageBytes or
  // has more than kMaxSegments segments.
  static absl::StatusOr<OutgoingFrame> Of(capnp::MessageBuilder& message);

  const iovec* iov() const { return iov_.data(); }
  size_t iov_count() const { return iov_count_; }
  size_t bytes() const { return bytes_; }

  OutgoingFrame(const OutgoingFrame&) = delete;
  OutgoingFrame& operator=(const OutgoingFrame&) = delete;
  // Moves must fix up the iovec that points into the table.
  OutgoingFrame(OutgoingFrame&& other) noexcept;
  OutgoingFrame& operator=(OutgoingFrame&&) = delete;

 private:
  OutgoingFrame() = default;

  // Up to kMaxSegments + 1 little-endian uint32 values, padded to 8 bytes.
  std::array<uint32_t, kMaxSegments + 2> table_{};
  std::array<iovec, kMaxSegments + 1> iov_{};
  size_t iov_count_ = 0;
  size_t bytes_ = 0;
};

// Copies a message into one flat array (table and segments), for sending
// later. Same limits as OutgoingFrame::Of.
absl::StatusOr<kj::Array<capnp::word>> Flatten(capnp::MessageBuilder& message);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_FRAMING_H_
