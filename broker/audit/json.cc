#include "broker/audit/json.h"

#include <cstdint>

#include "absl/strings/str_format.h"
#include "sdk/base/escape.h"

namespace capbroker::audit {
namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0.
size_t Utf8Length(absl::string_view text, size_t i) {
  unsigned char c = static_cast<unsigned char>(text[i]);
  size_t n;
  uint32_t min;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) { n = 2; min = 0x80; }
  else if ((c & 0xf0) == 0xe0) { n = 3; min = 0x800; }
  else if ((c & 0xf8) == 0xf0) { n = 4; min = 0x10000; }
  else return 0;
  if (i + n > text.size()) return 0;
  uint32_t cp = c & (0x7f >> n);
  for (size_t k = 1; k < n; ++k) {
    unsigned char cc = static_cast<unsigned char>(text[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// Bytes copied as they are: printable ASCII but the quote and backslash.
struct PlainTable {
  bool plain[256] = {};
  constexpr PlainTable() {
    for (int c = 0x20; c < 0x7f; ++c) plain[c] = c != '"' && c != '\\';
  }
};
constexpr PlainTable kPlain;

bool IsPlain(unsigned char c) { return kPlain.plain[c]; }

}  // namespace

void AppendJsonString(absl::string_view text, std::string& out) {
  out.push_back('"');
  for (size_t i = 0; i < text.size();) {
    // Most text (names, paths, reasons) is plain ASCII: copy runs at once.
    size_t run = i;
    while (run < text.size() && IsPlain(static_cast<unsigned char>(text[run]))) ++run;
    if (run > i) {
      out.append(text.data() + i, run - i);
      i = run;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n = Utf8Length(text, i);
    if (n > 1) {
      // Valid, but a terminal or a line reader acts on it.
      char32_t escaped = 0;
      if (ActingCharacter(text.substr(i, n), escaped) != 0) {
        absl::StrAppendFormat(&out, "\\u%04x", static_cast<uint32_t>(escaped));
      } else {
        out.append(text.data() + i, n);
      }
      i += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c >= 0x80) {
          // Not part of valid UTF-8: a lone low surrogate (see json.h).
          absl::StrAppendFormat(&out, "\\udc%02x", c);
        } else if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
}

}  // namespace capbroker::audit
