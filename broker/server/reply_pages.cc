#include "broker/server/reply_pages.h"

#include "absl/strings/str_cat.h"

namespace capbroker::server {

absl::StatusOr<absl::string_view> PageStart(capnp::Text::Reader start_after,
                                            absl::string_view request) {
  if (start_after.size() > wire::kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        request, " startAfter is ", start_after.size(), " bytes; a name has at most ",
        wire::kMaxNameBytes));
  }
  return absl::string_view(start_after.cStr(), start_after.size());
}

absl::Status NeedsPages(absl::string_view what) {
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " take more than one reply (", wire::kMaxMessageBytes,
      " bytes); a client of this release asks for them in pages"));
}

}  // namespace capbroker::server
