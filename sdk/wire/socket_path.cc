#include "sdk/wire/socket_path.h"

#include <stdlib.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace capbroker::wire {

absl::StatusOr<std::string> DefaultSocketPath(
    unsigned euid, const std::function<const char*(const char*)>& getenv) {
  const char* explicit_path = getenv("CAPBROKER_SOCKET");
  if (explicit_path != nullptr && explicit_path[0] != '\0') return std::string(explicit_path);
  const char* runtime = getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') {
    return absl::StrCat(runtime, "/capbroker/broker.sock");
  }
  if (euid == 0) return std::string(kSystemSocketPath);
  return absl::NotFoundError(
      "no broker socket given: pass --socket PATH, or set CAPBROKER_SOCKET or "
      "XDG_RUNTIME_DIR");
}

absl::StatusOr<std::string> DefaultSocketPath() {
  return DefaultSocketPath(geteuid(), [](const char* name) { return ::getenv(name); });
}

}  // namespace capbroker::wire
