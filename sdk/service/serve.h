// ServeWithGrant: the body of a hosted service's main().
//
//   int main(int argc, char** argv) {
//     return capbroker::ServeWithGrant("scanner", "signatures", argc, argv,
//         [](UniqueFd db, absl::string_view grant)
//             -> absl::StatusOr<std::unique_ptr<RequestHandler>> {...});
//   }
//
// The grant is found by its capability name (LISTEN_FDNAMES). A policy
// whose capability has another name passes it in the service's command:
// `command = [ "/usr/local/lib/capbroker/kvstore", "--grant=kv-data" ]`.
// The handler's maker gets the name in use, to name the grant in messages.
// A service with flags of its own, or a ConnectionLoop configured otherwise
// than by default, says so in ServeOptions. By default requests carry no
// fds (ConnectionLoop::Options::max_request_fds = 0); a protocol whose
// requests do raises the limit:
//
//   uint64_t max_bytes = kDefault;
//   ServeOptions options;
//   options.loop.max_request_fds = 1;  // a request may carry one file
//   options.flags.push_back({"max-bytes", "BYTES", [&](absl::string_view v) {
//     CB_ASSIGN_OR_RETURN(max_bytes, ParseDecimal("--max-bytes", v, 1, kMax));
//     return absl::OkStatus();
//   }});
//   return ServeWithGrant("archive", "store", argc, argv, make_handler, options);
//
// A service whose requests can block on what a client controls (a file on
// the client's own FUSE server) serves each connection in a worker process
// of its own (forking_server.h): `options.workers = ForkingServer::Options();`
// (each worker's loop then has `options.loop`).
#ifndef CAPBROKER_SDK_SERVICE_SERVE_H_
#define CAPBROKER_SDK_SERVICE_SERVE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"
#include "sdk/service/connection_loop.h"
#include "sdk/service/forking_server.h"

namespace capbroker {

// A flag of a service's own, `--NAME=VALUE` in its command.
struct ServiceFlag {
  std::string name;   // NAME, without the dashes
  std::string value;  // what VALUE is, for the usage line: "BYTES"
  // Takes VALUE; for one it refuses, an error naming the flag and showing
  // VALUE escaped, said with the usage line. A number is read with
  // ParseDecimal (sdk/base/decimal.h), which words it so.
  std::function<absl::Status(absl::string_view value)> set;
};

// How ServeWithGrant serves, beyond its grant.
struct ServeOptions {
  ConnectionLoop::Options loop;
  std::vector<ServiceFlag> flags;
  // Set: every connection in a worker process of its own, with these
  // options (their worker_loop replaced by `loop`); unset: all connections
  // in this process, one ConnectionLoop.
  std::optional<ForkingServer::Options> workers;
};

// Reads the arguments `args` (without the program name): `--grant=NAME`
// and the `flags`, each at most once, in any order (their `set` is called
// for each). The grant's name: NAME, or `default_grant`.
// kInvalidArgument for any other argument or a value a flag refuses; an
// argument it quotes is shown as Shown shows it (sdk/base/shown_text.h:
// escaped, and bounded).
absl::StatusOr<std::string> ParseServeArguments(const std::vector<std::string>& args,
                                                absl::string_view default_grant,
                                                const std::vector<ServiceFlag>& flags);

// Takes the service's environment (Service::FromEnvironment) and its grant
// named `default_grant` (or NAME, when argv holds `--grant=NAME`), makes the
// handler from the grant's fd and name, says Ready, and serves with a ConnectionLoop
// of `options.loop` (a ForkingServer with `options.workers`) until the
// broker closes the connection.
// Returns main()'s exit code: 0 when the broker closed the connection, 1
// when anything failed, which is said on stderr prefixed with `program`;
// 2 for arguments ParseServeArguments refuses, said with a usage line.
// The flags are read before `make_handler` runs, so it may use their values.
// Readiness comes after `make_handler`, and with `options.workers` after
// ForkingServer::CheckChildrenCanSetUp: a service whose grant is unusable,
// or whose sandbox refuses what its workers need, exits before it is
// ready, and the broker reports why.
int ServeWithGrant(
    absl::string_view program, absl::string_view default_grant, int argc, char** argv,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(
        UniqueFd grant_fd, absl::string_view grant)>
        make_handler,
    const ServeOptions& options = ServeOptions());

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_SERVE_H_
