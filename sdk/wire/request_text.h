// The checks of a request's name and path fields, against the wire's limits
// (limits.h): made by the client library before it builds a request, and by
// the broker again when it reads one, so that both say the same thing
// ("capability name is 100000 bytes; at most 64"). A client that checks
// first names the argument and its limit even for a name too long to fit
// in one datagram, which the broker would never see.
#ifndef CAPBROKER_SDK_WIRE_REQUEST_TEXT_H_
#define CAPBROKER_SDK_WIRE_REQUEST_TEXT_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capbroker::wire {

// Each is kInvalidArgument "WHAT is empty" or "WHAT is N bytes; at most
// MAX", WHAT the field's name in the message; OK otherwise. Only the
// length: whether the name is a policy's is the broker's to say.

// An acquire's capability (kMaxNameBytes): "capability name".
absl::Status CheckCapabilityName(absl::string_view name);

// An openBeneath's directory capability (kMaxNameBytes): "directory name".
absl::Status CheckDirectoryName(absl::string_view name);

// An openBeneath's path beneath it (kMaxPathBytes): "path".
absl::Status CheckBeneathPath(absl::string_view path);

// A connect's service (kMaxNameBytes): "service name".
absl::Status CheckServiceName(absl::string_view name);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_REQUEST_TEXT_H_
