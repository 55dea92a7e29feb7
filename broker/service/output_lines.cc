#include "broker/service/output_lines.h"

#include <utility>

namespace capbroker::service {
namespace {

char Printable(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f ? '?' : c;
}

}  // namespace

std::vector<std::string> OutputLines::Add(absl::string_view bytes) {
  std::vector<std::string> lines;
  for (char c : bytes) {
    if (c == '\n') {
      lines.push_back(std::move(partial_));
      partial_.clear();
      continue;
    }
    if (partial_.size() == kMaxLineBytes) {
      lines.push_back(std::move(partial_));
      partial_.clear();
    }
    partial_.push_back(Printable(c));
  }
  return lines;
}

std::vector<std::string> OutputLines::Finish() {
  std::vector<std::string> lines;
  if (!partial_.empty()) lines.push_back(std::move(partial_));
  partial_.clear();
  return lines;
}

}  // namespace capbroker::service
