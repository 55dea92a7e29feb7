#include "broker/daemon/hidden_config.h"

#include <stdlib.h>

#include <cerrno>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker::daemon {

absl::StatusOr<std::vector<std::string>> ConfigPathsToHide(absl::string_view policy_path) {
  std::string path(policy_path);
  std::unique_ptr<char, decltype(&free)> canonical(realpath(path.c_str(), nullptr), &free);
  if (canonical == nullptr) return ErrnoStatus(errno, absl::StrCat("realpath(", path, ")"));
  return std::vector<std::string>{kConfigDirectory, canonical.get()};
}

service::Launcher LauncherHiding(std::vector<std::string> hidden, service::Launcher launch) {
  return [hidden = std::move(hidden), launch = std::move(launch)](
             const sandbox::SandboxSpec& spec) {
    sandbox::SandboxSpec with_hidden = spec;
    with_hidden.hidden_paths.insert(with_hidden.hidden_paths.end(), hidden.begin(),
                                    hidden.end());
    return launch(with_hidden);
  };
}

}  // namespace capbroker::daemon
