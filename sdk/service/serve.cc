#include "sdk/service/serve.h"

#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/strip.h"
#include "sdk/base/status_macros.h"
#include "sdk/service/service.h"

namespace capbroker {
namespace {

absl::Status Serve(
    absl::string_view grant,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(UniqueFd)> make_handler,
    const ServeOptions& options) {
  CB_ASSIGN_OR_RETURN(Service service, Service::FromEnvironment());
  CB_ASSIGN_OR_RETURN(UniqueFd fd, service.TakeGrant(grant));
  CB_ASSIGN_OR_RETURN(std::unique_ptr<RequestHandler> handler, make_handler(std::move(fd)));
  CB_RETURN_IF_ERROR(service.Ready());
  if (options.workers.has_value()) {
    ForkingServer server(service.broker(), *handler, *options.workers);
    return server.Run();
  }
  ConnectionLoop loop(service.broker(), *handler);
  return loop.Run();
}

}  // namespace

int ServeWithGrant(
    absl::string_view program, absl::string_view default_grant, int argc, char** argv,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(UniqueFd)> make_handler,
    const ServeOptions& options) {
  absl::string_view grant = default_grant;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--grant=") || arg.empty()) {
      std::fprintf(stderr, "usage: %s [--grant=NAME]   (NAME: the %s grant; default %s)\n",
                   std::string(program).c_str(), std::string(default_grant).c_str(),
                   std::string(default_grant).c_str());
      return 2;
    }
    grant = arg;
  }
  absl::Status status = Serve(grant, make_handler, options);
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", std::string(program).c_str(), status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace capbroker
