// The checks of a request's name and path fields, against the wire's limits
// (limits.h), and the form of a policy's names (below). The field checks are made by the client library before it builds a request, and by
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

// The form of a policy's names (its principals', capabilities' and
// services'): 1 to kMaxNameBytes of [A-Za-z0-9_.-], the first a letter or
// digit (capctl takes names as arguments, and would read "--motd" or "-h"
// as an option). The policy validator holds a policy's names to it; the
// client library holds names the broker sends to it (an incoming
// connection's principal), which then need no escaping in a log line.

// Whether `name` is 1 to kMaxNameBytes of [A-Za-z0-9_.-], wherever they are.
bool HasPolicyNameCharacters(absl::string_view name);

// Whether `name` has the form of a policy's names: HasPolicyNameCharacters,
// and the first a letter or digit.
bool IsPolicyName(absl::string_view name);

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_REQUEST_TEXT_H_
