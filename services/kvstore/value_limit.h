// The limit on a kvstore value, and its check: one definition, used by the
// store (which enforces it) and by the client library (which checks before
// sending, so that a value too large is told the rule rather than a
// wire-level "message is N bytes").
#ifndef CAPBROKER_SERVICES_KVSTORE_VALUE_LIMIT_H_
#define CAPBROKER_SERVICES_KVSTORE_VALUE_LIMIT_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::kvstore {

// A value fits one request datagram (64 KiB) with room to spare.
inline constexpr size_t kMaxValueBytes = 32 * 1024;

// kResourceExhausted when `value` is longer than kMaxValueBytes
// ("value of 40000 bytes; at most 32768"). Any bytes are a value.
absl::Status CheckValue(absl::string_view value);

}  // namespace capbroker::kvstore

#endif  // CAPBROKER_SERVICES_KVSTORE_VALUE_LIMIT_H_
