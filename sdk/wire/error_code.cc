#include "sdk/wire/error_code.h"

namespace capbroker::wire {

using schema::ErrorCode;

schema::ErrorCode ToErrorCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument: return ErrorCode::INVALID_REQUEST;
    case absl::StatusCode::kPermissionDenied: return ErrorCode::PERMISSION_DENIED;
    case absl::StatusCode::kNotFound: return ErrorCode::NOT_FOUND;
    case absl::StatusCode::kResourceExhausted: return ErrorCode::RESOURCE_EXHAUSTED;
    case absl::StatusCode::kUnavailable: return ErrorCode::UNAVAILABLE;
    case absl::StatusCode::kUnimplemented: return ErrorCode::UNSUPPORTED_VERSION;
    case absl::StatusCode::kFailedPrecondition: return ErrorCode::FAILED_PRECONDITION;
    default: return ErrorCode::INTERNAL;
  }
}

absl::StatusCode FromErrorCode(schema::ErrorCode code) {
  switch (code) {
    case ErrorCode::INVALID_REQUEST: return absl::StatusCode::kInvalidArgument;
    case ErrorCode::PERMISSION_DENIED: return absl::StatusCode::kPermissionDenied;
    case ErrorCode::NOT_FOUND: return absl::StatusCode::kNotFound;
    case ErrorCode::RESOURCE_EXHAUSTED: return absl::StatusCode::kResourceExhausted;
    case ErrorCode::UNAVAILABLE: return absl::StatusCode::kUnavailable;
    case ErrorCode::UNSUPPORTED_VERSION: return absl::StatusCode::kUnimplemented;
    case ErrorCode::FAILED_PRECONDITION: return absl::StatusCode::kFailedPrecondition;
    case ErrorCode::INTERNAL: return absl::StatusCode::kInternal;
    case ErrorCode::UNKNOWN: break;
  }
  return absl::StatusCode::kUnknown;
}

absl::string_view ErrorCodeName(schema::ErrorCode code) {
  switch (code) {
    case ErrorCode::INVALID_REQUEST: return "invalidRequest";
    case ErrorCode::PERMISSION_DENIED: return "permissionDenied";
    case ErrorCode::NOT_FOUND: return "notFound";
    case ErrorCode::RESOURCE_EXHAUSTED: return "resourceExhausted";
    case ErrorCode::UNAVAILABLE: return "unavailable";
    case ErrorCode::UNSUPPORTED_VERSION: return "unsupportedVersion";
    case ErrorCode::FAILED_PRECONDITION: return "failedPrecondition";
    case ErrorCode::INTERNAL: return "internal";
    case ErrorCode::UNKNOWN: break;
  }
  return "unknown";
}

}  // namespace capbroker::wire
