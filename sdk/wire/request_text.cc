#include "sdk/wire/request_text.h"

#include <cstddef>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "sdk/wire/limits.h"

namespace capbroker::wire {
namespace {

absl::Status CheckText(absl::string_view what, absl::string_view text, size_t max_bytes) {
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", text.size(), " bytes; at most ", max_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCapabilityName(absl::string_view name) {
  return CheckText("capability name", name, kMaxNameBytes);
}

absl::Status CheckDirectoryName(absl::string_view name) {
  return CheckText("directory name", name, kMaxNameBytes);
}

absl::Status CheckBeneathPath(absl::string_view path) {
  return CheckText("path", path, kMaxPathBytes);
}

absl::Status CheckServiceName(absl::string_view name) {
  return CheckText("service name", name, kMaxNameBytes);
}

bool HasPolicyNameCharacters(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

bool IsPolicyName(absl::string_view name) {
  return HasPolicyNameCharacters(name) && absl::ascii_isalnum(name[0]);
}

}  // namespace capbroker::wire
