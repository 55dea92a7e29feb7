#include "sdk/base/decimal.h"

#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sdk/base/shown_text.h"

namespace capbroker {
namespace {

// Digits alone, without a leading 0 but in "0": of any size.
bool WellFormed(absl::string_view text) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return false;
  return text.find_first_not_of("0123456789") == absl::string_view::npos;
}

}  // namespace

std::optional<uint64_t> ParseDecimal(absl::string_view text) {
  if (!WellFormed(text)) return std::nullopt;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  uint64_t value = 0;
  for (char c : text) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (kMax - digit) / 10) return std::nullopt;  // past 64 bits
    value = value * 10 + digit;
  }
  return value;
}

absl::StatusOr<uint64_t> ParseDecimal(absl::string_view name, absl::string_view text,
                                      uint64_t low, uint64_t high) {
  std::optional<uint64_t> value = ParseDecimal(text);
  if (value.has_value() && *value >= low && *value <= high) return *value;
  return absl::InvalidArgumentError(absl::StrCat(
      name, " wants ",
      low == high ? absl::StrCat(low) : absl::StrCat("a decimal number from ", low, " to ", high),
      // A number out of range needs no lesson in how to write one.
      WellFormed(text) ? "" : " (digits only, no leading 0)", ", not '",
      Shown(text), "'"));
}

}  // namespace capbroker
