#include "broker/policy/excerpt.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace capbroker {

std::string Excerpt(absl::string_view text, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < max_bytes; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  if (text.size() > max_bytes) out += "...";
  return out;
}

std::string Quoted(absl::string_view text, size_t max_bytes) {
  return absl::StrCat("'", Excerpt(text, max_bytes), "'");
}

}  // namespace capbroker
