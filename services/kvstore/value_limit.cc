#include "services/kvstore/value_limit.h"

#include "absl/strings/str_cat.h"

namespace capbroker::kvstore {

absl::Status CheckValue(absl::string_view value) {
  if (value.size() > kMaxValueBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value of ", value.size(), " bytes; at most ", kMaxValueBytes));
  }
  return absl::OkStatus();
}

}  // namespace capbroker::kvstore
