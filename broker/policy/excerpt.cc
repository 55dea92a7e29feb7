#include "broker/policy/excerpt.h"

#include "absl/strings/str_cat.h"
#include "sdk/base/escape.h"

namespace capbroker {

std::string Excerpt(absl::string_view text, size_t max_bytes) {
  std::string out;
  if (AppendEscapedKeepingUtf8(text, max_bytes, out) < text.size()) out += "...";
  return out;
}

std::string Quoted(absl::string_view text, size_t max_bytes) {
  return absl::StrCat("'", Excerpt(text, max_bytes), "'");
}

}  // namespace capbroker
