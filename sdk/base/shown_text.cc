#include "sdk/base/shown_text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/escape.h"

namespace capbroker {
namespace {

// The unit at the start of `rest` (not empty) that a cut keeps whole: the
// escaper's (a character, or one byte), or a "\xHH" the text holds, the
// escaped form of a byte that a writer (the broker) escaped before it:
// four printable bytes, which a cut between them would turn into a
// dangling "\x".
EscapeUnit CutUnit(absl::string_view rest) {
  if (rest.size() >= 4 && rest[0] == '\\' && rest[1] == 'x' && absl::ascii_isxdigit(rest[2]) &&
      absl::ascii_isxdigit(rest[3])) {
    return {4, 4};
  }
  return FirstEscapeUnit(rest);
}

// The size of all of `text` escaped.
size_t ShownBytes(absl::string_view text) {
  size_t shown = 0;
  for (size_t at = 0; at < text.size();) {
    const EscapeUnit unit = CutUnit(text.substr(at));
    shown += unit.shown_bytes;
    at += unit.bytes;
  }
  return shown;
}

}  // namespace

std::string Shown(absl::string_view text, size_t max_bytes) {
  const size_t total = ShownBytes(text);
  std::string shown;
  if (total <= max_bytes) {
    AppendEscapedKeepingUtf8(text, total, shown);
    return shown;
  }
  // The head: the units from the start that fit in half the bound. The
  // tail: the units from the first start after which the rest fits in the
  // other half. Since the whole does not fit, the rest after the head does
  // not fit in the other half either: the tail starts after the head, and
  // at least one byte is left out.
  const size_t head_max = max_bytes / 2;
  const size_t tail_max = max_bytes - head_max;
  size_t head_end = 0;
  size_t head_shown = 0;
  size_t tail_start = 0;
  size_t shown_before = 0;  // of the units before tail_start
  while (total - shown_before > tail_max) {
    const EscapeUnit unit = CutUnit(text.substr(tail_start));
    if (head_end == tail_start && head_shown + unit.shown_bytes <= head_max) {
      head_end += unit.bytes;
      head_shown += unit.shown_bytes;
    }
    shown_before += unit.shown_bytes;
    tail_start += unit.bytes;
  }
  // Each end starts at a start of the escaper's units, so escaping it alone
  // shows exactly its units.
  AppendEscapedKeepingUtf8(text.substr(0, head_end), head_shown, shown);
  const size_t left_out = tail_start - head_end;
  absl::StrAppend(&shown, "... (", left_out, left_out == 1 ? " byte" : " bytes", " left out) ...");
  AppendEscapedKeepingUtf8(text.substr(tail_start), tail_max, shown);
  return shown;
}

}  // namespace capbroker
