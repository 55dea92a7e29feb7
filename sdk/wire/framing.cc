#include "sdk/wire/framing.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "capnp/serialize.h"

namespace capbroker::wire {
namespace {

// Words taken by the segment table of a message with `count` segments.
size_t TableWords(size_t count) { return (count + 2) / 2; }

}  // namespace

absl::Status ValidateFraming(kj::ArrayPtr<const capnp::word> words) {
  if (words.size() == 0) {
    return absl::InvalidArgumentError("empty message");
  }
  uint32_t first;
  std::memcpy(&first, words.begin(), sizeof(first));
  // The table stores count - 1, little-endian (x86 and arm64 are both LE).
  uint64_t count = static_cast<uint64_t>(first) + 1;
  if (count > kMaxSegments) {
    return absl::InvalidArgumentError(
        absl::StrCat("message claims ", count, " segments; at most ",
                     kMaxSegments, " are allowed"));
  }
  size_t table_words = TableWords(count);
  if (words.size() < table_words) {
    return absl::InvalidArgumentError("message ends inside its segment table");
  }
  const auto* sizes = reinterpret_cast<const uint32_t*>(words.begin()) + 1;
  uint64_t total = 0;
  for (uint64_t i = 0; i < count; ++i) total += sizes[i];
  uint64_t available = words.size() - table_words;
  if (total != available) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment table declares ", total, " words but the message has ",
        available));
  }
  return absl::OkStatus();
}

capnp::ReaderOptions ReaderLimits() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kTraversalLimitWords;
  options.nestingLimit = kNestingLimit;
  return options;
}

absl::StatusOr<OutgoingFrame> OutgoingFrame::Of(capnp::MessageBuilder& message) {
  kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments =
      message.getSegmentsForOutput();
  if (segments.size() == 0 || segments.size() > kMaxSegments) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "message has ", segments.size(), " segments; at most ", kMaxSegments,
        " can be sent"));
  }
  OutgoingFrame frame;
  frame.table_[0] = static_cast<uint32_t>(segments.size() - 1);
  size_t total_words = TableWords(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    frame.table_[i + 1] = static_cast<uint32_t>(segments[i].size());
    total_words += segments[i].size();
    frame.iov_[i + 1].iov_base = const_cast<capnp::word*>(segments[i].begin());
    frame.iov_[i + 1].iov_len = segments[i].size() * sizeof(capnp::word);
  }
  frame.bytes_ = total_words * sizeof(capnp::word);
  if (frame.bytes_ > kMaxMessageBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "message is ", frame.bytes_, " bytes; at most ", kMaxMessageBytes,
        " fit in one datagram"));
  }
  frame.iov_[0].iov_base = frame.table_.data();
  frame.iov_[0].iov_len = TableWords(segments.size()) * sizeof(capnp::word);
  frame.iov_count_ = segments.size() + 1;
  return frame;
}

OutgoingFrame::OutgoingFrame(OutgoingFrame&& other) noexcept
    : table_(other.table_),
      iov_(other.iov_),
      iov_count_(other.iov_count_),
      bytes_(other.bytes_) {
  iov_[0].iov_base = table_.data();
}

absl::StatusOr<kj::Array<capnp::word>> Flatten(capnp::MessageBuilder& message) {
  absl::StatusOr<OutgoingFrame> frame = OutgoingFrame::Of(message);
  if (!frame.ok()) return frame.status();
  auto flat = kj::heapArray<capnp::word>(frame->bytes() / sizeof(capnp::word));
  auto* out = reinterpret_cast<char*>(flat.begin());
  for (size_t i = 0; i < frame->iov_count(); ++i) {
    std::memcpy(out, frame->iov()[i].iov_base, frame->iov()[i].iov_len);
    out += frame->iov()[i].iov_len;
  }
  return flat;
}

}  // namespace capbroker::wire
