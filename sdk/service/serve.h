// ServeWithGrant: the body of a hosted service's main().
//
//   int main(int argc, char** argv) {
//     return capbroker::ServeWithGrant("scanner", "signatures", argc, argv,
//         [](UniqueFd db) -> absl::StatusOr<std::unique_ptr<RequestHandler>> {...});
//   }
//
// The grant is found by its capability name (LISTEN_FDNAMES). A policy
// whose capability has another name passes it in the service's command:
// `command = [ "/usr/local/lib/capbroker/kvstore", "--grant=kv-data" ]`.
//
// A service whose requests can block on what a client controls (a file on
// the client's own FUSE server) serves each connection in a worker process
// of its own (forking_server.h):
//
//   ServeOptions options;
//   options.workers = ForkingServer::Options();
//   return capbroker::ServeWithGrant("scanner", "signatures", argc, argv, make, options);
#ifndef CAPBROKER_SDK_SERVICE_SERVE_H_
#define CAPBROKER_SDK_SERVICE_SERVE_H_

#include <memory>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"
#include "sdk/service/connection_loop.h"
#include "sdk/service/forking_server.h"

namespace capbroker {

// How ServeWithGrant serves.
struct ServeOptions {
  // Set: every connection in a worker process of its own, with these
  // options; unset: all connections in this process, one ConnectionLoop.
  std::optional<ForkingServer::Options> workers;
};

// Takes the service's environment (Service::FromEnvironment) and its grant
// named `default_grant` (or NAME, when argv holds `--grant=NAME`), makes
// the handler from the grant's fd, says Ready, and serves with a
// ConnectionLoop (a ForkingServer with `options.workers`) until the broker
// closes the connection.
// Returns main()'s exit code: 0 when the broker closed the connection, 1
// when anything failed, which is said on stderr prefixed with `program`;
// 2 for arguments other than --grant=NAME.
// Readiness comes after `make_handler`: a service whose grant is unusable
// exits before it is ready, and the broker reports why.
int ServeWithGrant(
    absl::string_view program, absl::string_view default_grant, int argc, char** argv,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(UniqueFd)> make_handler,
    const ServeOptions& options = ServeOptions());

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_SERVE_H_
