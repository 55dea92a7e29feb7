#include "broker/service/output_lines.h"

#include <string.h>

#include <utility>

#include "sdk/base/escape.h"

namespace capbroker::service {
namespace {

// How many lines a line of `length` bytes, ended by '\n', makes once cut.
uint64_t Pieces(size_t length) {
  return length == 0 ? 1 : (length + kMaxLineBytes - 1) / kMaxLineBytes;
}

}  // namespace

std::vector<OutputLine> OutputLines::Add(absl::string_view bytes, Allow allow) {
  std::vector<OutputLine> lines;
  bool refused = false;
  size_t i = 0;
  while (i < bytes.size() && !refused) {
    char c = bytes[i++];
    if (c == '\n') {
      Complete(allow, refused, lines);
      continue;
    }
    if (partial_.size() == kMaxLineBytes) Complete(allow, refused, lines);
    partial_.push_back(c);
  }
  Suppress(bytes.substr(i));
  return lines;
}

void OutputLines::Complete(Allow allow, bool& refused, std::vector<OutputLine>& lines) {
  uint64_t suppressed = 0;
  if (allow(suppressed)) {
    lines.push_back({EscapedKeepingUtf8(partial_), suppressed + suppressed_});
    suppressed_ = 0;
  } else {
    refused = true;  // `allow` counts the lines it refuses
  }
  partial_.clear();
}

void OutputLines::Suppress(absl::string_view bytes) {
  while (!bytes.empty()) {
    const void* found = memchr(bytes.data(), '\n', bytes.size());
    if (found == nullptr) break;
    size_t end = static_cast<const char*>(found) - bytes.data();
    suppressed_ += Pieces(partial_.size() + end);
    partial_.clear();
    bytes.remove_prefix(end + 1);
  }
  // The unterminated rest: the pieces it fills are suppressed lines too; the
  // last one is kept, as it may be logged once its line ends in a later
  // batch. It comes wholly from `bytes` when a piece was filled before it,
  // since partial_ holds at most one piece.
  size_t length = partial_.size() + bytes.size();
  if (length > kMaxLineBytes) {
    size_t filled = (length - 1) / kMaxLineBytes;
    suppressed_ += filled;
    bytes.remove_prefix(bytes.size() - (length - filled * kMaxLineBytes));
    partial_.clear();
  }
  partial_.append(bytes.data(), bytes.size());
}

OutputEnd OutputLines::Finish(uint64_t refused) {
  OutputEnd end;
  end.suppressed = std::exchange(suppressed_, 0) + refused;
  if (!partial_.empty()) end.rest = EscapedKeepingUtf8(partial_);
  partial_.clear();
  return end;
}

}  // namespace capbroker::service
