#include "services/kvstore/key_name.h"

#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"

namespace capbroker::kvstore {
namespace {

constexpr char kDigits[] = "0123456789abcdef";

int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

absl::Status CheckKey(absl::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("empty key");
  if (key.size() > kMaxKeyBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("key of ", key.size(), " bytes; at most ", kMaxKeyBytes));
  }
  return absl::OkStatus();
}

std::string KeyFileName(absl::string_view key) {
  std::string name = kKeyPrefix;
  for (unsigned char c : key) {
    name.push_back(kDigits[c >> 4]);
    name.push_back(kDigits[c & 15]);
  }
  return name;
}

std::optional<std::string> KeyOfFileName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kKeyPrefix)) return std::nullopt;
  if (name.empty() || name.size() % 2 != 0 || name.size() > 2 * kMaxKeyBytes) return std::nullopt;
  std::string key;
  for (size_t i = 0; i < name.size(); i += 2) {
    int high = LowerHexValue(name[i]);
    int low = LowerHexValue(name[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    key.push_back(static_cast<char>(high * 16 + low));
  }
  return key;
}

}  // namespace capbroker::kvstore
