#include "broker/daemon/flags.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <iterator>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "broker/server/listener.h"
#include "broker/server/readiness.h"
#include "sdk/base/decimal.h"
#include "sdk/base/shown_text.h"
#include "sdk/wire/limits.h"

namespace capbroker::daemon {
namespace {

constexpr size_t kMaxConnectionsCap = 1 << 20;

absl::StatusOr<size_t> ParseCount(const std::string& flag, const std::string& value) {
  return ParseDecimal(flag, value, 1, kMaxConnectionsCap);
}

// --max-queued-reply-bytes: at least one reply of the largest size, since
// every reply is queued on its way out (see Limits), and at most 1 TiB.
constexpr uint64_t kMinQueuedReplyBytes = wire::kMaxMessageBytes;
constexpr uint64_t kMaxQueuedReplyBytes = uint64_t{1} << 40;

// ParseDecimal's refusal, with why the least is what it is.
absl::StatusOr<size_t> ParseQueuedBytes(const std::string& flag, const std::string& value) {
  absl::StatusOr<uint64_t> bytes =
      ParseDecimal(flag, value, kMinQueuedReplyBytes, kMaxQueuedReplyBytes);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat(bytes.status().message(), "; the least, ",
                                     kMinQueuedReplyBytes, ", is the largest reply: every "
                                     "reply is queued on its way out"));
  }
  return *bytes;
}

// The flags that take a value; --help (-h) is the only one without.
constexpr absl::string_view kValueFlags[] = {
    "--policy",    "--socket",          "--socket-mode",
    "--audit-log", "--ready-fd",        "--max-connections",
    "--cgroup",    "--max-connections-per-uid",
    "--max-queued-reply-bytes",         "--max-queued-reply-fds",
};

// 1 to 4 octal digits and nothing else: strtoul would also take leading
// blanks and a sign ("-0" is mode 0). At most 0777: no setuid, setgid or
// sticky bit on a socket.
std::optional<mode_t> ParseSocketMode(absl::string_view text) {
  if (text.empty() || text.size() > 4) return std::nullopt;
  mode_t mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    mode = mode * 8 + static_cast<mode_t>(c - '0');
  }
  if (mode > 0777) return std::nullopt;
  return mode;
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
         "                      if root owns that directory and neither group\n"
         "                      nor others may write it), else (root)\n"
         "                      /run/capbroker/broker.sock; refused when systemd\n"
         "                      passes the socket (LISTEN_FDS): the unit's\n"
         "                      ListenSequentialPacket= sets the path\n"
         "  --socket-mode MODE  octal mode of the socket file (default 0666 for\n"
         "                      root, 0600 otherwise); with o+w, a broker run\n"
         "                      by a user also takes a socket from systemd that\n"
         "                      other users can reach; a socket from systemd that\n"
         "                      lets in more than MODE is refused (SocketMode=)\n"
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
         "Each option may be given once.\n"
         "SIGTERM or SIGINT stop it; it removes its socket file on the way out.\n"
         "SIGHUP reloads the policy (one with any error is refused, and the current\n"
         "policy kept whole) and reopens --audit-log FILE.\n";
}

absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args) {
  absl::StatusOr<DaemonFlags> flags = ParseFlags(args, geteuid());
  if (!flags.ok()) return flags;
  // A LISTEN_PID or LISTEN_FDS that is not a number, or a count other than
  // 1, is refused at start (server::SystemdSocketCount says which), whatever
  // the flags: that, not --socket, is what is wrong then.
  absl::StatusOr<int> passed = server::SystemdSocketCount();
  if (absl::Status usage = CheckSocketFlag(*flags, passed.ok() && *passed == 1); !usage.ok()) {
    return usage;
  }
  return flags;
}

absl::Status CheckSocketFlag(const DaemonFlags& flags, bool socket_from_systemd) {
  // --help prints the usage whatever else is given.
  if (flags.help || !socket_from_systemd || flags.socket_path.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "--socket ", Shown(flags.socket_path),
      ": systemd passed the socket (LISTEN_FDS), and the .socket unit's "
      "ListenSequentialPacket= sets its path; leave --socket out, or set that path there"));
}

absl::StatusOr<DaemonFlags> ParseFlags(const std::vector<std::string>& args, uid_t euid) {
  DaemonFlags flags;
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::string value;
    bool has_inline_value = false;
    if (size_t eq = name.find('='); absl::StartsWith(name, "--") && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline_value = true;
    }
    if (name == "-h") name = "--help";
    const bool takes_value =
        std::find(std::begin(kValueFlags), std::end(kValueFlags), name) != std::end(kValueFlags);
    if (!takes_value && name != "--help") {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", Shown(args[i]), "'"));
    }
    // The last of two would win unseen: a drop-in or wrapper that adds a
    // --policy or --socket would change what the broker enforces or where
    // it listens without a word.
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(name, " given twice"));
    }
    if (name == "--help") {
      // As every other flag refuses a value it cannot use: one ignored
      // would let `--help=no` print usage and exit 0.
      if (has_inline_value) return absl::InvalidArgumentError("--help takes no value");
      flags.help = true;
      continue;
    }
    if (!has_inline_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = args[++i];
    }
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
    if (name == "--policy") {
      flags.policy_path = value;
    } else if (name == "--socket") {
      flags.socket_path = value;
    } else if (name == "--audit-log") {
      flags.audit_log_path = value;
    } else if (name == "--cgroup") {
      if (value[0] != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat("--cgroup wants an absolute path, not '", Shown(value), "'"));
      }
      flags.cgroup_dir = value;
    } else if (name == "--socket-mode") {
      std::optional<mode_t> parsed = ParseSocketMode(value);
      if (!parsed.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--socket-mode wants an octal mode such as 0660, not '", Shown(value), "'"));
      }
      const mode_t mode = *parsed;
      if (euid != 0 && (mode & S_IWUSR) == 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--socket-mode %s leaves out the broker's own user (uid %d): connecting takes "
            "write permission; give the owner u+w (0600 for that user alone)",
            value, euid));
      }
      flags.socket_mode = mode;
    } else if (name == "--ready-fd") {
      absl::StatusOr<uint64_t> parsed = ParseDecimal(name, value, 0, INT_MAX);
      if (!parsed.ok()) return parsed.status();
      const int fd = static_cast<int>(*parsed);
      if (fd < server::kMinReadyFd) {
        // See kMinReadyFd: closing one after READY would break the log.
        return absl::InvalidArgumentError(absl::StrCat(
            "--ready-fd ", fd, ": fds 0, 1 and 2 are stdin, stdout and stderr, which "
            "capbrokerd keeps open; pass the pipe as fd ", server::kMinReadyFd, " or above"));
      }
      flags.ready_fd = fd;
    } else if (name == "--max-queued-reply-bytes") {
      absl::StatusOr<size_t> n = ParseQueuedBytes(name, value);
      if (!n.ok()) return n.status();
      flags.limits.max_queued_bytes_total = *n;
    } else if (name == "--max-queued-reply-fds") {
      absl::StatusOr<size_t> n = ParseCount(name, value);
      if (!n.ok()) return n.status();
      flags.limits.max_queued_fds_total = *n;
    } else if (name == "--max-connections") {
      absl::StatusOr<size_t> n = ParseCount(name, value);
      if (!n.ok()) return n.status();
      flags.limits.max_connections = *n;
    } else {
      absl::StatusOr<size_t> n = ParseCount(name, value);
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
