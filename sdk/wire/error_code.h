// The mapping between absl::Status codes and the wire's ErrorCode, used by
// the broker to send errors and by the SDK to turn them back into statuses.
#ifndef CAPBROKER_SDK_WIRE_ERROR_CODE_H_
#define CAPBROKER_SDK_WIRE_ERROR_CODE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "schemas/broker.capnp.h"

namespace capbroker::wire {

// kInvalidArgument -> invalidRequest, kPermissionDenied -> permissionDenied,
// kNotFound -> notFound, kResourceExhausted -> resourceExhausted,
// kUnavailable -> unavailable, kUnimplemented -> unsupportedVersion,
// kFailedPrecondition -> failedPrecondition, anything else -> internal.
schema::ErrorCode ToErrorCode(absl::StatusCode code);

// The inverse of ToErrorCode; unknown values become kUnknown.
absl::StatusCode FromErrorCode(schema::ErrorCode code);

// The schema's name of `code` ("permissionDenied"), or "unknown".
absl::string_view ErrorCodeName(schema::ErrorCode code);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_ERROR_CODE_H_
