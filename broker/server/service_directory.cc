#include "broker/server/service_directory.h"

#include "absl/strings/cord.h"
#include "absl/types/optional.h"

namespace capbroker::server {
namespace {

// Where a refusal keeps its whole text for the audit line. A payload never
// reaches the client: replies carry the code and the message only
// (RequestHandler::SetError).
constexpr absl::string_view kAuditReasonPayload = "capbroker/audit-reason";

}  // namespace

absl::Status WithAuditReason(absl::Status shown, absl::string_view full) {
  shown.SetPayload(kAuditReasonPayload, absl::Cord(full));
  return shown;
}

std::string AuditReason(const absl::Status& status) {
  absl::optional<absl::Cord> full = status.GetPayload(kAuditReasonPayload);
  return full.has_value() ? std::string(*full) : std::string(status.message());
}

}  // namespace capbroker::server
