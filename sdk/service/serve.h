// ServeWithGrant: the body of a hosted service's main().
//
//   int main() {
//     return capbroker::ServeWithGrant("scanner", "signatures",
//         [](UniqueFd db) -> absl::StatusOr<std::unique_ptr<RequestHandler>> {...});
//   }
#ifndef CAPBROKER_SDK_SERVICE_SERVE_H_
#define CAPBROKER_SDK_SERVICE_SERVE_H_

#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"
#include "sdk/service/connection_loop.h"

namespace capbroker {

// Takes the service's environment (Service::FromEnvironment) and its grant
// named `grant`, makes the handler from the grant's fd, says Ready, and
// serves with a ConnectionLoop until the broker closes the connection.
// Returns main()'s exit code: 0 when the broker closed the connection, 1
// when anything failed, which is said on stderr prefixed with `program`.
// Readiness comes after `make_handler`: a service whose grant is unusable
// exits before it is ready, and the broker reports why.
int ServeWithGrant(
    absl::string_view program, absl::string_view grant,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(UniqueFd)> make_handler);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_SERVE_H_
