#include "sdk/base/escape.h"

#include "absl/strings/str_format.h"

namespace capbroker {
namespace {

// The length of the valid UTF-8 character of more than one byte at the
// start of `text`, and its code point; 0 when there is none (ASCII, or
// invalid UTF-8). The ranges are those of RFC 3629's table (no overlong
// forms, no surrogates, nothing beyond U+10FFFF).
size_t Utf8Character(absl::string_view text, char32_t& code_point) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code_point = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code_point = lead & 0x0f;
    if (lead == 0xe0) second_min = 0xa0;  // overlong below
    if (lead == 0xed) second_max = 0x9f;  // surrogates above
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code_point = lead & 0x07;
    if (lead == 0xf0) second_min = 0x90;  // overlong below
    if (lead == 0xf4) second_max = 0x8f;  // beyond U+10FFFF above
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    const unsigned char c = byte(i);
    const unsigned char min = i == 1 ? second_min : 0x80;
    const unsigned char max = i == 1 ? second_max : 0xbf;
    if (c < min || c > max) return 0;
    code_point = (code_point << 6) | (c & 0x3f);
  }
  return length;
}

// The code points ActingCharacter finds (see escape.h): the C1 controls,
// the line and paragraph separators, and the bidirectional embeddings,
// overrides, isolates and marks, which reorder what a terminal shows.
bool Acts(char32_t c) {
  return (c >= 0x80 && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
         (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c == 0x200e ||
         c == 0x200f || c == 0x061c;
}

}  // namespace

size_t ActingCharacter(absl::string_view text, char32_t& code_point) {
  if (text.empty()) return 0;
  char32_t c = 0;
  const size_t length = Utf8Character(text, c);
  if (length == 0 || !Acts(c)) return 0;
  code_point = c;
  return length;
}

size_t AppendEscaped(absl::string_view text, size_t max_bytes, std::string& out) {
  size_t added = 0;
  size_t used = 0;
  for (; used < text.size(); ++used) {
    const unsigned char c = static_cast<unsigned char>(text[used]);
    const bool printable = c >= 0x20 && c < 0x7f;
    const size_t form = printable ? 1 : 4;
    if (added + form > max_bytes) break;
    if (printable) {
      out += static_cast<char>(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
    added += form;
  }
  return used;
}

std::string Escaped(absl::string_view text) {
  std::string out;
  AppendEscaped(text, text.size() * 4, out);
  return out;
}

EscapeUnit FirstEscapeUnit(absl::string_view text) {
  char32_t code_point = 0;
  const size_t length = Utf8Character(text, code_point);
  if (length == 0) {
    const unsigned char c = static_cast<unsigned char>(text[0]);
    return {1, c >= 0x20 && c < 0x7f ? size_t{1} : size_t{4}};
  }
  return {length, Acts(code_point) ? length * 4 : length};
}

size_t AppendEscapedKeepingUtf8(absl::string_view text, size_t max_bytes, std::string& out) {
  size_t added = 0;
  size_t used = 0;
  while (used < text.size()) {
    const absl::string_view rest = text.substr(used);
    const EscapeUnit unit = FirstEscapeUnit(rest);
    // A kept character is its own bytes; anything else \xNN a byte. Either
    // whole or not at all: a cut never splits a character or its escaped
    // form.
    if (added + unit.shown_bytes > max_bytes) break;
    if (unit.shown_bytes == unit.bytes) {
      out.append(rest.data(), unit.bytes);
    } else {
      AppendEscaped(rest.substr(0, unit.bytes), unit.shown_bytes, out);
    }
    added += unit.shown_bytes;
    used += unit.bytes;
  }
  return used;
}

std::string EscapedKeepingUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  AppendEscapedKeepingUtf8(text, text.size() * 4, out);
  return out;
}

}  // namespace capbroker
