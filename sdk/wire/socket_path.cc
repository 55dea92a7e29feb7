#include "sdk/wire/socket_path.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sdk/base/escape.h"
#include "sdk/base/syscall.h"

namespace capbroker::wire {
namespace {

using Getenv = std::function<const char*(const char*)>;

// $CAPBROKER_SOCKET, if set and non-empty.
std::optional<std::string> ExplicitSocket(const Getenv& getenv) {
  const char* path = getenv("CAPBROKER_SOCKET");
  if (path == nullptr || path[0] == '\0') return std::nullopt;
  return std::string(path);
}

// $XDG_RUNTIME_DIR when absolute: a relative one is ignored, as it would
// depend on the cwd.
const char* RuntimeDir(const Getenv& getenv) {
  const char* runtime = getenv("XDG_RUNTIME_DIR");
  return runtime == nullptr || runtime[0] != '/' ? nullptr : runtime;
}

// The per-user socket, in a runtime directory that is the user's own (for
// root: see ForeignRuntimeDir).
std::optional<std::string> UserSocket(unsigned euid, const Getenv& getenv) {
  const char* runtime = RuntimeDir(getenv);
  if (runtime == nullptr || ForeignRuntimeDir(euid, getenv).has_value()) return std::nullopt;
  return absl::StrCat(runtime, "/capbroker/broker.sock");
}

// secure_getenv: in a setuid or setgid program (AT_SECURE) the variables
// come from whoever ran it, who could send its requests to a listener of
// their own and hand it fds as grants; there they read as unset, and the
// system socket is used.
const char* ProcessGetenv(const char* name) { return ::secure_getenv(name); }

}  // namespace

std::optional<std::string> ForeignRuntimeDir(unsigned euid, const Getenv& getenv) {
  const char* runtime = RuntimeDir(getenv);
  if (euid != 0 || runtime == nullptr) return std::nullopt;
  struct stat st;
  if (stat(runtime, &st) != 0) {
    return absl::StrCat("XDG_RUNTIME_DIR ", runtime, " cannot be used: stat: ",
                        std::strerror(errno));
  }
  if (st.st_uid != 0) {
    return absl::StrCat("XDG_RUNTIME_DIR ", runtime, " is owned by uid ", st.st_uid,
                        ", not root");
  }
  // Root's, but open to others (/tmp, which containers set for root): any
  // user could put a broker of their own at capbroker/broker.sock in it.
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::StrFormat("XDG_RUNTIME_DIR %s (mode %04o) is writable by others", runtime,
                           st.st_mode & 07777);
  }
  return std::nullopt;
}

absl::StatusOr<std::string> DefaultSocketPath(unsigned euid, const Getenv& getenv) {
  if (std::optional<std::string> path = ExplicitSocket(getenv)) return *path;
  if (std::optional<std::string> path = UserSocket(euid, getenv)) return *path;
  if (euid == 0) return std::string(kSystemSocketPath);
  return absl::NotFoundError(
      "no broker socket given: pass --socket PATH, or set CAPBROKER_SOCKET or "
      "XDG_RUNTIME_DIR");
}

absl::StatusOr<std::string> DefaultSocketPath() {
  return DefaultSocketPath(geteuid(), ProcessGetenv);
}

std::vector<ClientSocket> ClientSocketPaths(unsigned euid, const Getenv& getenv) {
  if (std::optional<std::string> path = ExplicitSocket(getenv)) {
    return {ClientSocket{*path, false}};
  }
  std::vector<ClientSocket> paths;
  if (std::optional<std::string> path = UserSocket(euid, getenv)) {
    paths.push_back(ClientSocket{*path, true});
  }
  paths.push_back(ClientSocket{kSystemSocketPath, false});
  return paths;
}

std::vector<ClientSocket> ClientSocketPaths() {
  return ClientSocketPaths(geteuid(), ProcessGetenv);
}

absl::Status CheckRuntimeDirBroker(int fd, unsigned euid, const std::string& path) {
  ucred peer{};
  socklen_t length = sizeof(peer);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_PEERCRED) on the broker "
                                           "connection to ", Escaped(path)));
  }
  if (peer.uid == euid || peer.uid == 0) return absl::OkStatus();
  const std::string allowed =
      euid == 0 ? std::string("root") : absl::StrCat("uid ", euid, " (this user) or root");
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing the broker at ", Escaped(path), ": it is run by uid ", peer.uid,
      ", and a broker found through XDG_RUNTIME_DIR must run as ", allowed,
      " (another user may have pointed XDG_RUNTIME_DIR, which su and sudo -E keep, at a "
      "listener of their own, to hand this process fds); unset XDG_RUNTIME_DIR, or name a "
      "socket you trust (capctl --socket, or CAPBROKER_SOCKET)"));
}

std::optional<std::string> ForeignRuntimeDir() {
  return ForeignRuntimeDir(geteuid(), ProcessGetenv);
}

}  // namespace capbroker::wire
