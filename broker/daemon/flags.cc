#include "broker/daemon/flags.h"

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "broker/server/readiness.h"
#include "sdk/wire/limits.h"

namespace capbroker::daemon {
namespace {

constexpr size_t kMaxConnectionsCap = 1 << 20;

absl::StatusOr<size_t> ParseCount(const std::string& flag, const std::string& value) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(value, &n) || n == 0 || n > kMaxConnectionsCap) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " wants a number from 1 to ", kMaxConnectionsCap, ", not '", value, "'"));
  }
  return static_cast<size_t>(n);
}

// --max-queued-reply-bytes: at least one reply of the largest size, since
// every reply is queued on its way out (see Limits), and at most 1 TiB.
constexpr uint64_t kMinQueuedReplyBytes = wire::kMaxMessageBytes;
constexpr uint64_t kMaxQueuedReplyBytes = uint64_t{1} << 40;

absl::StatusOr<size_t> ParseQueuedBytes(const std::string& flag, const std::string& value) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(value, &n) || n < kMinQueuedReplyBytes || n > kMaxQueuedReplyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " wants a number of bytes from ", kMinQueuedReplyBytes, " (the largest reply) to ",
        kMaxQueuedReplyBytes, ", not '", value, "'"));
  }
  return static_cast<size_t>(n);
}

}  // namespace

const char* Usage() {
  return "usage: capbrokerd --policy FILE [--socket PATH] [--socket-mode MODE]\n"
         "                  [--audit-log FILE] [--ready-fd N]\n"
         "                  [--max-connections N] [--max-connections-per-uid N]\n"
         "                  [--cgroup DIR]\n"
         "                  [--max-queued-reply-bytes N] [--max-queued-reply-fds N]\n"
         "\n"
         "  --policy FILE       the policy to enforce (see `capctl policy init`)\n"
         "  --socket PATH       where to listen; default $CAPBROKER_SOCKET, else\n"
         "                      $XDG_RUNTIME_DIR/capbroker/broker.sock (root: only\n"
         "                      if root owns that directory), else (root)\n"
         "                      /run/capbroker/broker.sock; ignored when systemd\n"
         "                      passes the socket (LISTEN_FDS)\n"
         "  --socket-mode MODE  octal mode of the socket file (default 0666 for\n"
         "                      root, 0600 otherwise); with o+w, a broker run\n"
         "                      by a user also takes a socket from systemd that\n"
         "                      other users can reach\n"
         "  --audit-log FILE    append audit lines (JSON) here, not to stderr\n"
         "  --ready-fd N        write a line to fd N (3 or above, inherited) once\n"
         "                      serving, then close it\n"
         "  --max-connections N, --max-connections-per-uid N   quotas\n"
         "                      (default 16384 and 4096)\n"
         "  --cgroup DIR        a delegated cgroup v2 directory: services get a\n"
         "                      child cgroup there for memoryMax and pidsMax\n"
         "                      (checked at start; without it, a policy that sets\n"
         "                      them is refused)\n"
         "  --max-queued-reply-bytes N  replies waiting for clients that do not\n"
         "                      read them, all connections together (default\n"
         "                      67108864, 64 MiB); over it, the connection\n"
         "                      holding the most is disconnected\n"
         "  --max-queued-reply-fds N  the same for the fds those replies hold\n"
         "                      (default 4096)\n"
         "\n"
         "SIGTERM or SIGINT stop it; it removes its socket file on the way out.\n";
}

absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args) {
  return ParseFlags(args, geteuid());
}

absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args, uid_t euid) {
  DaemonFlags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    bool has_inline_value = false;
    if (size_t eq = name.find('='); absl::StartsWith(name, "--") && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline_value = true;
    }
    if (name == "--help" || name == "-h") {
      flags.help = true;
      continue;
    }
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (has_inline_value) return value;
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      return args[++i];
    };
    absl::StatusOr<std::string> v;
    if (name == "--policy" || name == "--socket" || name == "--socket-mode" ||
        name == "--audit-log" || name == "--ready-fd" ||
        name == "--max-connections" || name == "--max-connections-per-uid" ||
        name == "--cgroup" || name == "--max-queued-reply-bytes" ||
        name == "--max-queued-reply-fds") {
      v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", args[i], "'"));
    }
    if (name == "--policy") {
      flags.policy_path = *v;
    } else if (name == "--socket") {
      flags.socket_path = *v;
    } else if (name == "--audit-log") {
      flags.audit_log_path = *v;
    } else if (name == "--cgroup") {
      if ((*v)[0] != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat("--cgroup wants an absolute path, not '", *v, "'"));
      }
      flags.cgroup_dir = *v;
    } else if (name == "--socket-mode") {
      char* end = nullptr;
      unsigned long mode = std::strtoul(v->c_str(), &end, 8);
      if (*end != '\0' || mode > 0777) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--socket-mode wants an octal mode such as 0660, not '", *v, "'"));
      }
      if (euid != 0 && (mode & S_IWUSR) == 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--socket-mode %s leaves out the broker's own user (uid %d): connecting takes "
            "write permission; give the owner u+w (0600 for that user alone)",
            *v, euid));
      }
      flags.socket_mode = static_cast<mode_t>(mode);
    } else if (name == "--ready-fd") {
      int fd = -1;
      if (!absl::SimpleAtoi(*v, &fd) || fd < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--ready-fd wants an fd number, not '", *v, "'"));
      }
      if (fd < server::kMinReadyFd) {
        // See kMinReadyFd: closing one after READY would break the log.
        return absl::InvalidArgumentError(absl::StrCat(
            "--ready-fd ", fd, ": fds 0, 1 and 2 are stdin, stdout and stderr, which "
            "capbrokerd keeps open; pass the pipe as fd ", server::kMinReadyFd, " or above"));
      }
      flags.ready_fd = fd;
    } else if (name == "--max-queued-reply-bytes") {
      absl::StatusOr<size_t> n = ParseQueuedBytes(name, *v);
      if (!n.ok()) return n.status();
      flags.limits.max_queued_bytes_total = *n;
    } else if (name == "--max-queued-reply-fds") {
      absl::StatusOr<size_t> n = ParseCount(name, *v);
      if (!n.ok()) return n.status();
      flags.limits.max_queued_fds_total = *n;
    } else if (name == "--max-connections") {
      absl::StatusOr<size_t> n = ParseCount(name, *v);
      if (!n.ok()) return n.status();
      flags.limits.max_connections = *n;
    } else {
      absl::StatusOr<size_t> n = ParseCount(name, *v);
      if (!n.ok()) return n.status();
      flags.limits.max_connections_per_uid = *n;
    }
  }
  if (!flags.help && flags.policy_path.empty()) {
    return absl::InvalidArgumentError("--policy FILE is required");
  }
  return flags;
}

}  // namespace capbroker::daemon
