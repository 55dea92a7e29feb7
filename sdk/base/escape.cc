#include "sdk/base/escape.h"

#include "absl/strings/str_format.h"

namespace capbroker {

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

}  // namespace capbroker
