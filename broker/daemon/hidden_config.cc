#include "broker/daemon/hidden_config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sdk/base/escape.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::daemon {
namespace {

absl::StatusOr<std::string> CanonicalPath(absl::string_view path) {
  std::string copy(path);
  std::unique_ptr<char, decltype(&free)> canonical(realpath(copy.c_str(), nullptr), &free);
  if (canonical == nullptr) {
    return ErrnoStatus(errno, absl::StrCat("realpath(", EscapedKeepingUtf8(copy), ")"));
  }
  return std::string(canonical.get());
}

std::string Holds(BrokerFile kind, absl::string_view path) {
  switch (kind) {
    case BrokerFile::kPolicy:
      return absl::StrCat(
          "the broker's policy file ", EscapedKeepingUtf8(path),
          ": a service given it could read the policy, which names every service, "
          "capability path and principal's uid; grant a directory beneath it that does not "
          "hold the policy file, or move the policy file out of it (capbrokerd --policy)");
    case BrokerFile::kSocket:
      return absl::StrCat(
          "the broker's socket ", EscapedKeepingUtf8(path),
          ": a service given it could connect to the broker by that path, known by its uid "
          "as any local client is, not as the service; grant a directory beneath it that "
          "does not hold the socket, or move the socket out of it (capbrokerd --socket)");
    case BrokerFile::kAuditLog:
      return absl::StrCat(
          "the broker's audit log ", EscapedKeepingUtf8(path),
          ": a service given it could erase or forge its lines, or read every peer's uid, "
          "pid and program; grant a directory beneath it that does not hold the audit log, "
          "or move the audit log out of it (capbrokerd --audit-log)");
  }
  return "";
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ConfigPathsToHide(absl::string_view policy_path) {
  absl::StatusOr<std::string> canonical = CanonicalPath(policy_path);
  if (!canonical.ok()) return canonical.status();
  return std::vector<std::string>{kConfigDirectory, *canonical};
}


absl::StatusOr<std::vector<GuardedDirectory>> DirectoriesHolding(absl::string_view path,
                                                                 BrokerFile kind) {
  absl::StatusOr<std::string> canonical = CanonicalPath(path);
  if (!canonical.ok()) return canonical.status();
  std::string holds = Holds(kind, *canonical);
  std::vector<GuardedDirectory> guarded;
  std::string dir = *canonical;
  while (dir != "/") {
    size_t slash = dir.rfind('/');
    dir = slash == 0 ? "/" : dir.substr(0, slash);
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("stat(", EscapedKeepingUtf8(dir), ")"));
    }
    guarded.push_back(GuardedDirectory{st.st_dev, st.st_ino, dir, holds});
  }
  return guarded;
}

absl::StatusOr<PolicyLocation> LocatePolicy(absl::string_view policy_path) {
  PolicyLocation location;
  CB_ASSIGN_OR_RETURN(location.hidden, ConfigPathsToHide(policy_path));
  CB_ASSIGN_OR_RETURN(location.directories,
                      DirectoriesHolding(policy_path, BrokerFile::kPolicy));
  return location;
}

absl::StatusOr<SocketLocation> LocateSocket(absl::string_view socket_path,
                                            absl::string_view lock_path) {
  SocketLocation location;
  CB_ASSIGN_OR_RETURN(std::string socket, CanonicalPath(socket_path));
  location.hidden.push_back(std::move(socket));
  if (!lock_path.empty()) {
    CB_ASSIGN_OR_RETURN(std::string lock, CanonicalPath(lock_path));
    location.hidden.push_back(std::move(lock));
  }
  CB_ASSIGN_OR_RETURN(location.directories,
                      DirectoriesHolding(socket_path, BrokerFile::kSocket));
  return location;
}

absl::StatusOr<AuditLogLocation> LocateAuditLog(absl::string_view path) {
  AuditLogLocation location;
  CB_ASSIGN_OR_RETURN(location.hidden, CanonicalPath(path));
  CB_ASSIGN_OR_RETURN(location.directories, DirectoriesHolding(path, BrokerFile::kAuditLog));
  return location;
}

void ConfigGuard::AddAuditLog(AuditLogLocation audit_log) { audit_log_ = std::move(audit_log); }

void ConfigGuard::AddSocket(SocketLocation socket) {
  for (std::string& path : socket.hidden) socket_.hidden.push_back(std::move(path));
  for (GuardedDirectory& directory : socket.directories) {
    socket_.directories.push_back(std::move(directory));
  }
}

std::vector<std::string> ConfigGuard::hidden() const {
  std::vector<std::string> hidden = policy_.hidden;
  hidden.insert(hidden.end(), socket_.hidden.begin(), socket_.hidden.end());
  if (!audit_log_.hidden.empty()) hidden.push_back(audit_log_.hidden);
  return hidden;
}

absl::Status ConfigGuard::CheckGrant(absl::string_view name, int fd) const {
  // The cached inode: its type and ids never change, and asking sends
  // nothing to a FUSE or NFS server that may not answer.
  struct statx stx = {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &stx) !=
      0) {
    return ErrnoStatus(errno, absl::StrCat("statx(grant '", name, "')"));
  }
  if (!S_ISDIR(stx.stx_mode)) return absl::OkStatus();
  const dev_t dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  std::vector<std::string> reasons;
  std::string path;
  for (const std::vector<GuardedDirectory>* guarded :
       {&policy_.directories, &socket_.directories, &audit_log_.directories}) {
    for (const GuardedDirectory& directory : *guarded) {
      if (directory.dev != dev || directory.ino != stx.stx_ino) continue;
      path = directory.path;
      reasons.push_back(directory.holds);
    }
  }
  if (reasons.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("directory grant '", name, "' is ",
                                                    EscapedKeepingUtf8(path), ", which holds ",
                                                    absl::StrJoin(reasons, "; it also holds ")));
}

service::Launcher LauncherHiding(const ConfigGuard& guard, service::Launcher launch) {
  return [&guard, launch = std::move(launch)](const sandbox::SandboxSpec& spec) {
    sandbox::SandboxSpec with_hidden = spec;
    const std::vector<std::string> hidden = guard.hidden();
    with_hidden.hidden_paths.insert(with_hidden.hidden_paths.end(), hidden.begin(),
                                    hidden.end());
    return launch(with_hidden);
  };
}

}  // namespace capbroker::daemon
