#include "sdk/service/serve.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/service/service.h"

namespace capbroker {
namespace {

absl::Status Serve(
    absl::string_view grant,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(UniqueFd,
                                                                      absl::string_view)>
        make_handler,
    const ServeOptions& options) {
  CB_ASSIGN_OR_RETURN(Service service, Service::FromEnvironment());
  CB_ASSIGN_OR_RETURN(UniqueFd fd, service.TakeGrant(grant));
  CB_ASSIGN_OR_RETURN(std::unique_ptr<RequestHandler> handler, make_handler(std::move(fd), grant));
  if (options.workers.has_value()) CB_RETURN_IF_ERROR(ForkingServer::CheckChildrenCanSetUp());
  CB_RETURN_IF_ERROR(service.Ready());
  if (options.workers.has_value()) {
    ForkingServer::Options workers = *options.workers;
    workers.worker_loop = options.loop;
    ForkingServer server(service.broker(), *handler, workers);
    return server.Run();
  }
  ConnectionLoop loop(service.broker(), *handler, options.loop);
  return loop.Run();
}

std::string Usage(absl::string_view program, absl::string_view default_grant,
                  const std::vector<ServiceFlag>& flags) {
  std::string usage = absl::StrCat("usage: ", program, " [--grant=NAME]");
  for (const ServiceFlag& flag : flags) {
    absl::StrAppend(&usage, " [--", flag.name, "=", flag.value, "]");
  }
  absl::StrAppend(&usage, "   (NAME: the ", default_grant, " grant; default ", default_grant, ")");
  return usage;
}

}  // namespace

absl::StatusOr<std::string> ParseServeArguments(const std::vector<std::string>& args,
                                                absl::string_view default_grant,
                                                const std::vector<ServiceFlag>& flags) {
  std::string grant(default_grant);
  std::set<std::string> seen;
  for (const std::string& arg : args) {
    absl::string_view rest = arg;
    if (!absl::ConsumePrefix(&rest, "--") || rest.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", Shown(arg), "'"));
    }
    const size_t equals = rest.find('=');
    const std::string name(rest.substr(0, equals));
    const absl::string_view value = rest.substr(equals + 1);
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("--", Shown(name), " given twice"));
    }
    if (name == "grant") {
      if (value.empty()) return absl::InvalidArgumentError("--grant= needs a NAME");
      grant = std::string(value);
      continue;
    }
    auto flag = std::find_if(flags.begin(), flags.end(),
                             [&](const ServiceFlag& f) { return f.name == name; });
    if (flag == flags.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", Shown(arg), "'"));
    }
    absl::Status set = flag->set(value);
    if (!set.ok()) return absl::InvalidArgumentError(set.message());
  }
  return grant;
}

int ServeWithGrant(
    absl::string_view program, absl::string_view default_grant, int argc, char** argv,
    absl::FunctionRef<absl::StatusOr<std::unique_ptr<RequestHandler>>(UniqueFd,
                                                                      absl::string_view)>
        make_handler,
    const ServeOptions& options) {
  absl::StatusOr<std::string> grant = ParseServeArguments(
      std::vector<std::string>(argv + 1, argv + argc), default_grant, options.flags);
  if (!grant.ok()) {
    std::fprintf(stderr, "%s: %s\n%s\n", std::string(program).c_str(),
                 std::string(grant.status().message()).c_str(),
                 Usage(program, default_grant, options.flags).c_str());
    return 2;
  }
  absl::Status status = Serve(*grant, make_handler, options);
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", std::string(program).c_str(), status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace capbroker
