// The file name of a key in the store's directory.
//
// A key is any 1 to kMaxKeyBytes bytes; its file is "k." followed by the
// key in lowercase hex. The name therefore holds only [k.0-9a-f]: no '/',
// no "..", nothing a client can use to reach outside the directory, and at
// most 2 + 2 * kMaxKeyBytes = 242 bytes, under NAME_MAX (255). Temporary
// files are "t." and a unique suffix, never a key's name.
#ifndef CAPBROKER_SERVICES_KVSTORE_KEY_NAME_H_
#define CAPBROKER_SERVICES_KVSTORE_KEY_NAME_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::kvstore {

inline constexpr size_t kMaxKeyBytes = 120;
// The most keys a store holds (and a client accepts from a list).
inline constexpr size_t kMaxKeys = 100000;
inline constexpr char kKeyPrefix[] = "k.";
inline constexpr char kTempPrefix[] = "t.";

// kInvalidArgument for an empty key, kResourceExhausted for a long one.
absl::Status CheckKey(absl::string_view key);

// The file name of a valid key.
std::string KeyFileName(absl::string_view key);

// The key whose file `name` is; std::nullopt for any other name (including
// upper-case hex, which KeyFileName never makes).
std::optional<std::string> KeyOfFileName(absl::string_view name);

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_KEY_NAME_H_
