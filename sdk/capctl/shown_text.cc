#include "sdk/capctl/shown_text.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "sdk/base/escape.h"

namespace capbroker {
namespace {

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

// The first offset at or after `at` that is not inside a UTF-8 character
// whose lead byte comes before `at`. A continuation byte no lead byte
// reaches is no character's: the escaper shows it alone, as \xNN.
size_t ToCharacter(absl::string_view text, size_t at) {
  if (at >= text.size() || !IsContinuationByte(text[at])) return at;
  for (size_t back = 1; back <= 3 && back <= at; ++back) {
    const unsigned char c = static_cast<unsigned char>(text[at - back]);
    if (IsContinuationByte(c)) continue;
    const size_t length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return length > back ? std::min(text.size(), at - back + length) : at;
  }
  return at;
}

// Where the shown end of `text` starts: the first character at or after
// `from` from which the rest of `text`, escaped, takes at most `max_bytes`.
size_t TailStart(absl::string_view text, size_t from, size_t max_bytes) {
  // Each byte takes at least one byte escaped: no earlier start can fit.
  size_t start = ToCharacter(text, std::max(from, text.size() - std::min(text.size(), max_bytes)));
  // At most max_bytes rounds, each escaping at most max_bytes bytes.
  std::string tail;
  while (AppendEscapedKeepingUtf8(text.substr(start), max_bytes, tail) < text.size() - start) {
    tail.clear();
    start = ToCharacter(text, start + 1);
  }
  return start;
}

}  // namespace

std::string Shown(absl::string_view text, size_t max_bytes) {
  std::string shown;
  if (AppendEscapedKeepingUtf8(text, max_bytes, shown) == text.size()) return shown;
  shown.clear();
  const size_t head_bytes = max_bytes / 2;
  const size_t head_end = AppendEscapedKeepingUtf8(text, head_bytes, shown);
  const size_t tail_start = TailStart(text, head_end, max_bytes - head_bytes);
  const size_t left_out = tail_start - head_end;
  absl::StrAppend(&shown, "... (", left_out, left_out == 1 ? " byte" : " bytes", " left out) ...");
  AppendEscapedKeepingUtf8(text.substr(tail_start), max_bytes - head_bytes, shown);
  return shown;
}

}  // namespace capbroker
