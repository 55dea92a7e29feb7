#include "sdk/wire/socket_path.h"

#include <stdlib.h>
#include <unistd.h>

#include <optional>

#include "absl/strings/str_cat.h"

namespace capbroker::wire {
namespace {

using Getenv = std::function<const char*(const char*)>;

// $CAPBROKER_SOCKET, if set and non-empty.
std::optional<std::string> ExplicitSocket(const Getenv& getenv) {
  const char* path = getenv("CAPBROKER_SOCKET");
  if (path == nullptr || path[0] == '\0') return std::nullopt;
  return std::string(path);
}

// The per-user socket. A relative XDG_RUNTIME_DIR is ignored: it would
// depend on the cwd.
std::optional<std::string> UserSocket(const Getenv& getenv) {
  const char* runtime = getenv("XDG_RUNTIME_DIR");
  if (runtime == nullptr || runtime[0] != '/') return std::nullopt;
  return absl::StrCat(runtime, "/capbroker/broker.sock");
}

const char* ProcessGetenv(const char* name) { return ::getenv(name); }

}  // namespace

absl::StatusOr<std::string> DefaultSocketPath(unsigned euid, const Getenv& getenv) {
  if (std::optional<std::string> path = ExplicitSocket(getenv)) return *path;
  if (std::optional<std::string> path = UserSocket(getenv)) return *path;
  if (euid == 0) return std::string(kSystemSocketPath);
  return absl::NotFoundError(
      "no broker socket given: pass --socket PATH, or set CAPBROKER_SOCKET or "
      "XDG_RUNTIME_DIR");
}

absl::StatusOr<std::string> DefaultSocketPath() {
  return DefaultSocketPath(geteuid(), ProcessGetenv);
}

std::vector<std::string> ClientSocketPaths(const Getenv& getenv) {
  if (std::optional<std::string> path = ExplicitSocket(getenv)) return {*path};
  std::vector<std::string> paths;
  if (std::optional<std::string> path = UserSocket(getenv)) paths.push_back(*path);
  paths.emplace_back(kSystemSocketPath);
  return paths;
}

std::vector<std::string> ClientSocketPaths() { return ClientSocketPaths(ProcessGetenv); }

}  // namespace capbroker::wire
