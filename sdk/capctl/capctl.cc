#include "sdk/capctl/capctl.h"

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "broker/policy/policy.h"
#include "broker/policy/service_validator.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/decimal.h"
#include "sdk/base/escape.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/capctl/display_width.h"
#include "sdk/capctl/fd_placement.h"
#include "sdk/capctl/policy_commands.h"
#include "sdk/capctl/usage.h"
#include "sdk/client/capability.h"
#include "sdk/client/client.h"

namespace capbroker {
namespace {

// Largest fd name in LISTEN_FDNAMES, as systemd limits it (FDNAME_MAX).
constexpr size_t kMaxFdNameBytes = 255;

// Whether systemd takes `name` in LISTEN_FDNAMES, as its fdname_is_valid
// does: ASCII from the space to '~' but ':' (the list's separator); no
// control characters, DEL or bytes above it (UTF-8 included).
bool IsFdName(absl::string_view name) {
  for (char c : name) {
    if (c == ':' || c < 0x20 || c > 0x7e) return false;  // char is signed: >= 0x80 is < 0
  }
  return name.size() <= kMaxFdNameBytes;
}

// The magic of pidfs (PID_FS_MAGIC, Linux 6.9; not in older headers).
constexpr long kPidfsMagic = 0x50494446;

// This process's pidfd inode id, as systemd's pidfd_get_inode_id reads it
// (fstat's st_ino of a pidfd on pidfs; 64 bits wide on 64-bit
// architectures, as systemd's name_to_handle_at route gives it elsewhere);
// nullopt when the kernel has no pidfs (pidfds are then anonymous inodes,
// all alike) or a call fails.
std::optional<uint64_t> OwnPidfdId() {
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));  // always CLOEXEC
  struct statfs fs;
  struct stat st;
  if (!pidfd || fstatfs(pidfd.get(), &fs) != 0 || fs.f_type != kPidfsMagic ||
      fstat(pidfd.get(), &st) != 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(st.st_ino);
}

// --timeout's SECONDS: a decimal number (sdk/base/decimal.h: digits alone,
// no leading 0), then '.' and digits if a fraction is wanted (at most 9
// each side: nothing to overflow); 0 is no limit. Anything else (a sign, an
// exponent, "inf") is refused rather than read as something.
std::optional<absl::Duration> ParseTimeout(absl::string_view text) {
  const size_t dot = text.find('.');
  const std::optional<uint64_t> seconds = ParseDecimal(text.substr(0, dot));
  if (!seconds.has_value() || *seconds > 999999999) return std::nullopt;
  int64_t nanoseconds = 0;
  if (dot != absl::string_view::npos) {
    const absl::string_view fraction = text.substr(dot + 1);
    if (fraction.empty() || fraction.size() > 9) return std::nullopt;
    for (size_t i = 0; i < 9; ++i) {
      const char c = i < fraction.size() ? fraction[i] : '0';
      if (c < '0' || c > '9') return std::nullopt;
      nanoseconds = nanoseconds * 10 + (c - '0');
    }
  }
  const absl::Duration timeout =
      absl::Seconds(static_cast<int64_t>(*seconds)) + absl::Nanoseconds(nanoseconds);
  return timeout == absl::ZeroDuration() ? absl::InfiniteDuration() : timeout;
}

// Every text capctl did not write (from the broker: a name, a path, a
// service's last exit, a refusal's reason; from a policy: a note quoting a
// path, an error line) and every argument it echoes is shown escaped, so
// that neither a hostile broker nor a service whose failure it reports
// reaches the terminal with an escape sequence, and a newline in a path
// does not split its line; but a name in any language is shown as it is
// (/srv/données, not /srv/donn\xc3\xa9es): EscapedKeepingUtf8, which
// escapes controls, C1 controls, invalid UTF-8, line separators and bidi
// controls (sdk/base/escape.h).
//
// Who escapes: the broker's and the policy loader's messages come escaped
// already, each name where it entered the message (broker/util/
// trusted_path, broker/policy), in this same form. capctl escapes them
// again all the same, since a broker's reply is not to be trusted (nor an
// older broker's); that leaves escaped text as it is, since what the
// escaper writes is printable ASCII or text it keeps (a backslash stays one
// backslash: \x0a, never \x5cx0a). An error line's arguments and reason
// are Shown (sdk/base/shown_text.h): escaped so, and bounded.

// A text from the broker or a policy, escaped as above. Not cut: the broker
// bounds its texts, and the client library checks the reply's size.
std::string Displayed(absl::string_view text) { return EscapedKeepingUtf8(text); }

// `text`, Displayed, then spaces up to `width` terminal columns and two
// more: counted by DisplayWidth, so that a wide (East Asian) character
// takes its two columns and a combining mark none.
std::string Padded(absl::string_view text, size_t width) {
  std::string padded = Displayed(text);
  const size_t columns = DisplayWidth(padded);
  padded.append(std::max(width, columns) + 2 - columns, ' ');
  return padded;
}

// A text of several lines (a refused reload's errors), Displayed line by
// line, lines after the first indented by `indent`.
std::string ShownLines(absl::string_view text, absl::string_view indent = "  ") {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) lines.push_back(Displayed(line));
  return absl::StrJoin(lines, absl::StrCat("\n", indent));
}

// A usage error: the message for "capctl: <why>", and the usage text.
struct UsageError {
  std::string why;
};

// What the command line asked for, after the subcommand.
struct Options {
  std::vector<std::string> positional;
  std::optional<schema::Access> access;
  bool create = false;
  bool truncate = false;
  std::optional<mode_t> mode;
  std::vector<std::string> command;  // exec: after "--"
  bool saw_separator = false;
};

std::optional<schema::Access> ParseAccess(absl::string_view name) {
  if (name == "read") return schema::Access::READ;
  if (name == "write") return schema::Access::WRITE;
  if (name == "readWrite") return schema::Access::READ_WRITE;
  if (name == "append") return schema::Access::APPEND;
  return std::nullopt;
}

// Permission bits in octal, as chmod takes them: at most 0777 (the broker
// keeps only these bits; anything wider is refused rather than masked).
std::optional<mode_t> ParseMode(absl::string_view text) {
  if (text.empty() || text.size() > 4) return std::nullopt;
  mode_t mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    mode = mode * 8 + (c - '0');
  }
  if (mode > 0777) return std::nullopt;
  return mode;
}

// Parses the subcommand's arguments. `allowed` lists the flags it takes,
// each at most once; `exec_style` stops at "--" and keeps the rest as the
// command. No option has a single dash, and no name does (a policy's names
// begin with a letter or digit), so a word with one is a mistyped option,
// refused rather than taken for a name: except for the positional argument
// at index `dash_positional`, whose value may begin with one (open's PATH:
// "-draft" is a file name like any other).
absl::StatusOr<Options> ParseOptions(const std::vector<std::string>& args,
                                     size_t begin,
                                     const std::vector<absl::string_view>& allowed,
                                     bool exec_style,
                                     std::optional<size_t> dash_positional) {
  Options options;
  std::set<std::string> seen;  // the flags given so far
  auto takes = [&](absl::string_view flag) {
    for (absl::string_view a : allowed) {
      if (a == flag) return true;
    }
    return false;
  };
  for (size_t i = begin; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--" && exec_style) {
      options.saw_separator = true;
      options.command.assign(args.begin() + i + 1, args.end());
      break;
    }
    if (!absl::StartsWith(arg, "--")) {
      if (absl::StartsWith(arg, "-") && dash_positional != options.positional.size()) {
        return absl::InvalidArgumentError(absl::StrCat("unknown option ", Shown(arg)));
      }
      options.positional.emplace_back(arg);
      continue;
    }
    std::string flag(arg);
    std::optional<std::string> value;
    if (size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    if (!takes(flag)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", Shown(flag)));
    }
    // A second one would silently win: a wrapper that adds arguments could
    // change what is asked for (--access) without a sign.
    if (!seen.insert(flag).second) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " given twice"));
    }
    bool needs_value = flag == "--access" || flag == "--mode";
    if (needs_value && !value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      }
      value = args[++i];
    }
    if (!needs_value && value) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " takes no value"));
    }
    if (flag == "--access") {
      options.access = ParseAccess(*value);
      if (!options.access) {
        return absl::InvalidArgumentError(absl::StrCat(
            "bad access \"", Shown(*value), "\" (read, write, readWrite or append)"));
      }
    } else if (flag == "--mode") {
      options.mode = ParseMode(*value);
      if (!options.mode) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad mode \"", Shown(*value), "\" (octal, at most 0777)"));
      }
    } else if (flag == "--create") {
      options.create = true;
    } else if (flag == "--truncate") {
      options.truncate = true;
    }
  }
  return options;
}

std::string Describe(const Capability& cap) {
  std::string line = absl::StrCat(Displayed(cap.name), ": ", KindName(cap.kind));
  if (cap.kind == schema::Kind::MEMORY) {
    absl::StrAppend(&line, ", ", cap.size, " bytes");
  } else {
    absl::StrAppend(&line, ", ", AccessName(cap.access), " access");
  }
  if (!cap.path.empty()) absl::StrAppend(&line, ", path ", Displayed(cap.path));
  absl::StrAppend(&line, ", fd ", cap.fd.get());
  return line;
}

// One command's context: the streams and the socket.
class Capctl {
 public:
  Capctl(std::string socket, absl::Duration timeout, std::ostream& out, std::ostream& err)
      : socket_(std::move(socket)), timeout_(timeout), out_(out), err_(err) {}

  int Run(const std::vector<std::string>& args, size_t begin);

 private:
  // One line, "capctl: CONTEXT: REASON": a newline in the reason (a path
  // someone gave, say) is shown as \x0a, as Shown shows every control
  // byte, so the line keeps all of it, or both its ends when it is longer
  // than its bound. (Statuses of several lines, policy check's errors, are
  // printed line by line by their command, not here.)
  int Fail(const absl::Status& status, absl::string_view context) {
    err_ << "capctl: " << context << ": " << Shown(status.message(), kMaxShownReasonBytes);
    // Only the client's timeout gives kDeadlineExceeded: no broker reply
    // carries it.
    if (absl::IsDeadlineExceeded(status)) {
      err_ << " (--timeout SECONDS sets how long capctl waits; 0: no limit)";
    }
    err_ << "\n";
    return ExitCodeFor(status);
  }
  // The same, in the command's name ("capctl: list: REASON"): for what
  // concerns the command as a whole, such as a broker it cannot reach. Not
  // "connect: ", which would name another command.
  int Fail(const absl::Status& status) { return Fail(status, command_); }
  // A usage error: one line "capctl: <why>", then the usage of the command
  // being run (`command_`), or the whole text when there is none.
  int Usage(absl::string_view why) {
    std::string usage = command_.empty() ? std::string() : UsageOf(command_);
    err_ << "capctl: " << why << "\n" << (usage.empty() ? FullUsage() : usage);
    return kExitUsage;
  }
  // `capctl COMMAND --help`: COMMAND's usage, on `out`.
  int Help(absl::string_view command) {
    out_ << UsageOf(command);
    return kExitOk;
  }
  // Whether the first argument after a command, at `i`, asks for help. Only
  // the first: a later one is an option of the command (unknown) or, after
  // "--", an argument of the program exec or connect runs.
  static bool AsksForHelp(const std::vector<std::string>& args, size_t i) {
    return i < args.size() && IsHelpFlag(args[i]);
  }
  absl::StatusOr<Client> ConnectBroker() {
    return Client::Connect(socket_, ClientOptions{timeout_});
  }

  int Request(const Options& o);
  int Open(const Options& o);
  int Exec(const Options& o);
  int List(const Options& o);
  int Status(const Options& o);
  int Services(const Options& o);
  int Connect(const Options& o);
  // Runs `command` with `fds` at 3.. and LISTEN_FDS, LISTEN_PID,
  // LISTEN_FDNAMES (`fd_names`) and LISTEN_PIDFDID (where the kernel has
  // pidfs; else cleared) set, as systemd does. Returns only when
  // the command could not be run.
  int ExecWith(std::vector<UniqueFd> fds, const std::vector<std::string>& fd_names,
               std::vector<std::string> command);
  int PolicyCheck(const std::string& path);
  int HelpAbout(const std::vector<std::string>& args, size_t begin);

  std::string socket_;
  absl::Duration timeout_;  // of each call; absl::InfiniteDuration(): none
  std::ostream& out_;
  std::ostream& err_;
  // The command whose usage a usage error shows ("request", "policy",
  // "policy check"); empty until the command is known.
  std::string command_;
};

int Capctl::Request(const Options& o) {
  if (o.positional.size() != 1) return Usage("request takes one NAME");
  const std::string& name = o.positional[0];
  if (name.empty()) return Usage("empty capability name");
  absl::StatusOr<Client> client = ConnectBroker();
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<Capability> cap =
      client->Acquire(name, o.access.value_or(schema::Access::UNSPECIFIED));
  if (!cap.ok()) return Fail(cap.status(), absl::StrCat("request ", Shown(name)));
  out_ << Describe(*cap) << "\n";
  return kExitOk;
}

int Capctl::Open(const Options& o) {
  if (o.positional.size() != 2) return Usage("open takes DIR and PATH");
  const std::string& dir = o.positional[0];
  const std::string& path = o.positional[1];
  if (dir.empty() || path.empty()) return Usage("empty DIR or PATH");
  // open reads by default, which can neither create nor truncate: the
  // broker's refusal would name an access the user never wrote.
  if (!o.access.has_value() && (o.create || o.truncate)) {
    const char* flags = !o.truncate ? "--create needs"
                        : !o.create ? "--truncate needs"
                                    : "--create and --truncate need";
    // As the broker's rules: an append fd must not empty the file.
    const char* accesses = o.truncate ? "write or readWrite" : "write, readWrite or append";
    return Usage(absl::StrCat("open ", flags, " --access ", accesses,
                              " (without --access, open reads)"));
  }
  // The mode is that of a file open creates: without --create it would
  // be dropped without a sign.
  if (o.mode.has_value() && !o.create) return Usage("open: --mode needs --create");
  BeneathOptions options;
  options.access = o.access.value_or(schema::Access::READ);
  options.create = o.create;
  options.truncate = o.truncate;
  if (o.mode) options.mode = *o.mode;
  absl::StatusOr<Client> client = ConnectBroker();
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<Capability> cap = client->OpenBeneath(dir, path, options);
  if (!cap.ok()) return Fail(cap.status(), absl::StrCat("open ", Shown(dir), " ", Shown(path)));
  out_ << Describe(*cap) << "\n";
  return kExitOk;
}

// exec and connect check their own arguments before the "--": without
// them, what the command lacks first is what to ask for, not the "--".
int Capctl::Exec(const Options& o) {
  if (o.positional.empty()) return Usage("exec needs at least one NAME");
  if (!o.saw_separator) return Usage("exec needs -- between the NAMEs and the command");
  if (o.command.empty() || o.command[0].empty()) return Usage("exec needs a command after --");
  std::vector<std::pair<std::string, std::string>> wanted;  // name, fd name
  for (const std::string& spec : o.positional) {
    std::pair<std::string, std::string> parts =
        absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (spec.find('=') == std::string::npos) parts.second = parts.first;
    if (parts.first.empty() || parts.second.empty()) {
      return Usage(absl::StrCat("exec: empty name in \"", Shown(spec), "\""));
    }
    if (!IsFdName(parts.second)) {
      return Usage(absl::StrCat("exec: bad fd name \"", Shown(parts.second), "\" (at most ",
                                kMaxFdNameBytes,
                                " bytes of printable ASCII or spaces, not ':', as systemd "
                                "takes)"));
    }
    wanted.push_back(std::move(parts));
  }
  std::vector<UniqueFd> fds;
  std::vector<std::string> fd_names;
  {
    absl::StatusOr<Client> client = ConnectBroker();
    if (!client.ok()) return Fail(client.status());
    for (const auto& [name, fd_name] : wanted) {
      absl::StatusOr<Capability> cap = client->Acquire(name);
      if (!cap.ok()) return Fail(cap.status(), absl::StrCat("exec ", Shown(name)));
      fds.push_back(std::move(cap->fd));
      fd_names.push_back(fd_name);
    }
    // The broker connection closes here: the program gets only its fds.
  }
  return ExecWith(std::move(fds), fd_names, o.command);
}

int Capctl::ExecWith(std::vector<UniqueFd> fds, const std::vector<std::string>& fd_names,
                     std::vector<std::string> command) {
  const size_t count = fds.size();
  // Failures before execvp run no command either: 127, as for execvp's.
  // They are in the name of the command running (exec or connect).
  if (absl::Status placed = PlaceInheritedFds(std::move(fds)); !placed.ok()) {
    Fail(placed);
    return kExitCannotExec;
  }
  // The program gets stdio and its fds, nothing capctl itself inherited:
  // everything above is marked close-on-exec (not closed, so that capctl
  // can still report a failed exec).
  if (absl::Status marked = MarkCloseOnExecFrom(static_cast<unsigned>(3 + count));
      !marked.ok()) {
    Fail(marked);
    return kExitCannotExec;
  }
  setenv("LISTEN_FDS", std::to_string(count).c_str(), 1);
  setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  setenv("LISTEN_FDNAMES", absl::StrJoin(fd_names, ":").c_str(), 1);
  // systemd 258's sd_listen_fds() takes the fds only when LISTEN_PIDFDID,
  // if set, is the caller's own pidfd id: one inherited from a
  // socket-activated parent would make CMD ignore its fds. execvp keeps the
  // process, and with it the id; without pidfs the variable goes, and
  // LISTEN_PID alone decides.
  if (std::optional<uint64_t> id = OwnPidfdId()) {
    setenv("LISTEN_PIDFDID", std::to_string(*id).c_str(), 1);
  } else {
    unsetenv("LISTEN_PIDFDID");
  }
  std::vector<char*> argv;
  for (std::string& a : command) argv.push_back(a.data());
  argv.push_back(nullptr);
  out_.flush();
  err_.flush();
  execvp(argv[0], argv.data());
  int saved = errno;
  err_ << "capctl: exec " << Shown(command[0]) << ": " << strerror(saved) << "\n";
  return kExitCannotExec;
}

int Capctl::Connect(const Options& o) {
  if (o.positional.empty()) return Usage("connect takes one SERVICE");
  // Before the count: "connect kvstore cmd" lacks the "--", not a SERVICE.
  if (!o.saw_separator) return Usage("connect needs -- between SERVICE and the command");
  if (o.positional.size() != 1) return Usage("connect takes one SERVICE");
  if (o.positional[0].empty()) return Usage("empty service name");
  if (o.command.empty() || o.command[0].empty()) {
    return Usage("connect needs a command after --");
  }
  const std::string& service = o.positional[0];
  std::vector<UniqueFd> fds;
  {
    absl::StatusOr<Client> client = ConnectBroker();
    if (!client.ok()) return Fail(client.status());
    absl::StatusOr<Capability> connection = client->ConnectService(service);
    if (!connection.ok()) return Fail(connection.status(), absl::StrCat("connect ", Shown(service)));
    fds.push_back(std::move(connection->fd));
  }
  return ExecWith(std::move(fds), {service}, o.command);
}

int Capctl::Services(const Options& o) {
  if (!o.positional.empty()) return Usage("services takes no arguments");
  absl::StatusOr<Client> client = ConnectBroker();
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<std::vector<ServiceInfo>> services = client->Services();
  if (!services.ok()) return Fail(services.status());
  if (services->empty()) {
    out_ << "no services in the policy\n";
    return kExitOk;
  }
  size_t width = 7;
  for (const ServiceInfo& s : *services) width = std::max(width, DisplayWidth(Displayed(s.name)));
  out_ << Padded("SERVICE", width) << Padded("STATE", 8) << Padded("PID", 7)
       << Padded("RESTARTS", 8) << Padded("UPTIME", 7) << "PROTECTIONS\n";
  for (const ServiceInfo& s : *services) {
    out_ << Padded(s.name, width) << Padded(ServiceStateName(s.state), 8)
         << Padded(s.pid == 0 ? "-" : std::to_string(s.pid), 7)
         << Padded(std::to_string(s.restarts), 8)
         << Padded(s.pid == 0 ? "-" : absl::StrCat(s.uptime_seconds, "s"), 7)
         << (s.protections.empty() ? "-" : Displayed(s.protections)) << "\n";
    if (s.removed) {
      out_ << "  an old instance (removed from the policy, or restarted by a reload), not "
              "exited yet\n";
    }
    if (!s.missing.empty()) out_ << "  missing: " << Displayed(s.missing) << "\n";
    if (!s.last_exit.empty()) {
      out_ << "  last exit: " << Displayed(s.last_exit) << "\n";
    }
  }
  return kExitOk;
}

int Capctl::List(const Options& o) {
  if (!o.positional.empty()) return Usage("list takes no arguments");
  absl::StatusOr<Client> client = ConnectBroker();
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<std::vector<CapabilityInfo>> caps = client->List();
  if (!caps.ok()) return Fail(caps.status());
  size_t width = 4;
  for (const CapabilityInfo& c : *caps) width = std::max(width, DisplayWidth(Displayed(c.name)));
  out_ << Padded("NAME", width) << Padded("KIND", 9) << Padded("ACCESS", 9) << "PATH/SIZE\n";
  for (const CapabilityInfo& c : *caps) {
    std::string where = c.kind == schema::Kind::MEMORY
                            ? absl::StrCat(c.size, " bytes")
                            : Displayed(c.path);
    std::string access =
        c.kind == schema::Kind::MEMORY ? "-" : AccessName(c.access);
    out_ << Padded(c.name, width) << Padded(KindName(c.kind), 9) << Padded(access, 9)
         << where << "\n";
  }
  return kExitOk;
}

int Capctl::Status(const Options& o) {
  if (!o.positional.empty()) return Usage("status takes no arguments");
  absl::StatusOr<Client> client = ConnectBroker();
  if (!client.ok()) return Fail(client.status());
  absl::StatusOr<BrokerStatus> s = client->Status();
  if (!s.ok()) return Fail(s.status());
  out_ << "broker:      protocol " << s->version << ", up " << s->uptime_seconds
       << "s\n"
       << "policy:      "
       << (s->policy_path.empty() ? "(path shown to root and the broker's user)"
                                  : Displayed(s->policy_path))
       << " (" << s->capabilities
       << " capabilities, " << s->principals << " principals; generation "
       << s->policy_generation << ")\n";
  // The last reload's outcome, not the last refusal's: a refusal that a
  // later reload made good is only counted.
  if (s->last_reload_seconds_ago >= 0) {
    out_ << "reloads:     last " << s->last_reload_seconds_ago << "s ago: ";
    if (s->last_reload_refused) {
      out_ << "refused, the policy before stays: "
           << (s->last_reload_error.empty() ? "(why is shown to root and the broker's user)"
                                            : ShownLines(s->last_reload_error));
    } else {
      out_ << "installed (generation " << s->policy_generation << ")";
    }
    out_ << "; " << s->policy_reload_failures << " refused in all\n";
  } else if (s->policy_reload_failures > 0) {  // a broker that does not say when
    out_ << "reloads:     " << s->policy_reload_failures << " refused; last refused: "
         << (s->last_reload_error.empty() ? "(shown to root and the broker's user)"
                                          : ShownLines(s->last_reload_error))
         << "\n";
  }
  if (!s->audit_log_error.empty()) {
    out_ << "audit log:   the last reopen (SIGHUP, or after the file was deleted) was refused; "
            "lines go on into the file open before: "
         << Displayed(s->audit_log_error) << "\n";
  }
  if (s->audit_lines_lost > 0) {
    // Lost lines are of grants, denials and counts alike; only a grant
    // loses anything by it (fail closed), and it is never delivered.
    out_ << "audit log:   " << s->audit_lines_lost
         << (s->audit_lines_lost == 1 ? " line" : " lines")
         << " could not be written (grants whose line was lost were withheld, never "
            "delivered)\n";
  }
  if (s->audit_lines_to_deleted_files > 0) {
    // Written, grants delivered, but to a file someone deleted (rm, not a
    // rotation's rename): gone with it. The broker's stderr says when.
    out_ << "audit log:   " << s->audit_lines_to_deleted_files
         << (s->audit_lines_to_deleted_files == 1 ? " line" : " lines")
         << " written to the log's file after it was deleted (rm), lost with it (the "
            "broker's standard error says when)\n";
  }
  out_ << "connections: " << s->connections << "\n"
       << "grants:      " << s->grants << "\n"
       << "denials:     " << s->denials << "\n";
  for (const auto& [reason, n] : s->denials_by_reason) {
    out_ << "  " << Displayed(reason) << ": " << n << "\n";
  }
  const PeerInfo& me = client->peer();
  out_ << "you:         uid " << me.uid << ", gid " << me.gid << ", pid " << me.pid
       << ", exe " << Displayed(me.exe) << "\n"
       << "principals:  "
       << (me.principals.empty() ? "(none)" : Displayed(absl::StrJoin(me.principals, ", ")));
  if (me.more_principals > 0) out_ << " and " << me.more_principals << " more";
  out_ << "\n";
  return kExitOk;
}

// Whom the file's owner is judged against: capctl checks as a broker
// running as this process's euid would (root or that uid may own the file),
// which a broker running as root is not (root only).
std::string OwnerAssumption() {
  uid_t euid = geteuid();
  if (euid == 0) {
    return "the file's owner was judged as for a broker running as root (root must own it)";
  }
  return absl::StrCat("the file's owner was judged as for a broker running as uid ", euid,
                      ", the invoking user (root or uid ", euid,
                      " may own it); a broker running as root accepts only a file root owns");
}

// Uses LoadPolicyFile, so the file is checked as the daemon checks it
// (owner, mode, symlinks), not only its text. Exit 0 when valid, else 1.
// A valid file: one line "FILE: ok (...)" on `out`, then notes ("note: ...")
// on what only the broker can judge. A rejected one: each error once, on
// `err`: the parser's "FILE:LINE:COL: message" lines (the form editors jump
// to), each Displayed, then the verdict "capctl: FILE: rejected (N errors)";
// any other failure (no such file, owner, mode) is one line "capctl: policy
// check: REASON", in the command's name: the loader's REASON names the file
// already (LoadPolicyFile), and "capctl: FILE: " before it showed it twice.
int Capctl::PolicyCheck(const std::string& path) {
  absl::StatusOr<PolicySummary> policy = CheckPolicyFile(path);
  if (!policy.ok()) {
    if (!absl::IsInvalidArgument(policy.status())) {
      Fail(policy.status());
      return kExitFailure;  // rejected, whatever the reason: not "not found" (4)
    }
    size_t errors = 0;
    for (absl::string_view line :
         absl::StrSplit(policy.status().message(), '\n', absl::SkipEmpty())) {
      // Escaped already where each name entered the line (Diagnostics,
      // the validator): escaped again all the same (a broker's or a
      // loader's text is not trusted), which leaves it as it is.
      err_ << Displayed(line) << "\n";
      // Diagnostics ends with "FILE: N more errors not shown".
      size_t more = 0;
      absl::string_view tail = line.substr(line.rfind(": ") == absl::string_view::npos
                                               ? 0
                                               : line.rfind(": ") + 2);
      if (absl::EndsWith(tail, " more errors not shown") &&
          absl::SimpleAtoi(tail.substr(0, tail.find(' ')), &more)) {
        errors += more;
      } else {
        ++errors;
      }
    }
    err_ << "capctl: " << Shown(path) << ": rejected (" << errors
         << (errors == 1 ? " error" : " errors") << ")\n";
    return kExitFailure;
  }
  out_ << Displayed(path) << ": ok (" << policy->capabilities << " capabilities, "
       << policy->principals << " principals, " << policy->services << " services)\n";
  for (const std::string& note : policy->notes) out_ << "note: " << Displayed(note) << "\n";
  out_ << "note: " << OwnerAssumption() << "\n";
  return kExitOk;
}

// `capctl help [COMMAND]` (--help and -h alike): the whole text, or
// COMMAND's usage alone, as `COMMAND --help` prints it; COMMAND may be two
// words ("policy check") or a group ("policy"). `help --help` asks for
// help's own usage, which is the whole text. A COMMAND the table does not
// have is a usage error, not the whole text with exit 0: a typo should not
// pass for an answer.
int Capctl::HelpAbout(const std::vector<std::string>& args, size_t begin) {
  if (begin == args.size() || (begin + 1 == args.size() && IsHelpFlag(args[begin]))) {
    out_ << FullUsage();
    return kExitOk;
  }
  const std::string command = absl::StrJoin(args.begin() + begin, args.end(), " ");
  if (UsageOf(command).empty()) {
    return Usage(absl::StrCat("help: unknown command \"", Shown(command), "\""));
  }
  return Help(command);
}

int Capctl::Run(const std::vector<std::string>& args, size_t begin) {
  if (begin >= args.size()) return Usage("no command");
  const std::string& command = args[begin];
  if (command == "help" || IsHelpFlag(command)) return HelpAbout(args, begin + 1);
  if (command == "policy") {
    command_ = command;
    if (AsksForHelp(args, begin + 1)) return Help(command);
    if (begin + 1 >= args.size()) return Usage("policy needs check or init");
    const std::string& what = args[begin + 1];
    if (what == "init" || what == "check") command_ = absl::StrCat(command, " ", what);
    if ((what == "init" || what == "check") && AsksForHelp(args, begin + 2)) {
      return Help(command_);
    }
    if (what == "init") {
      if (begin + 2 != args.size()) return Usage("policy init takes no arguments");
      out_ << StarterPolicy();
      return kExitOk;
    }
    if (what == "check") {
      if (begin + 3 != args.size()) return Usage("policy check takes one FILE");
      if (args[begin + 2].empty()) return Usage("empty FILE");
      return PolicyCheck(args[begin + 2]);
    }
    return Usage(absl::StrCat("unknown policy command \"", Shown(what), "\""));
  }
  struct Sub {
    const char* name;
    std::vector<absl::string_view> flags;
    bool exec_style;
    std::optional<size_t> dash_positional;  // ParseOptions
    int (Capctl::*run)(const Options&);
  };
  constexpr size_t kOpenPath = 1;  // open DIR PATH
  const Sub subs[] = {
      {"request", {"--access"}, false, std::nullopt, &Capctl::Request},
      {"open", {"--access", "--create", "--truncate", "--mode"}, false, kOpenPath,
       &Capctl::Open},
      {"exec", {}, true, std::nullopt, &Capctl::Exec},
      {"list", {}, false, std::nullopt, &Capctl::List},
      {"status", {}, false, std::nullopt, &Capctl::Status},
      {"services", {}, false, std::nullopt, &Capctl::Services},
      {"connect", {}, true, std::nullopt, &Capctl::Connect},
  };
  for (const Sub& sub : subs) {
    if (command != sub.name) continue;
    command_ = command;
    if (AsksForHelp(args, begin + 1)) return Help(command);
    absl::StatusOr<Options> options =
        ParseOptions(args, begin + 1, sub.flags, sub.exec_style, sub.dash_positional);
    if (!options.ok()) {
      return Usage(absl::StrCat(command, ": ", options.status().message()));
    }
    return (this->*sub.run)(*options);
  }
  return Usage(absl::StrCat("unknown command \"", Shown(command), "\""));
}

}  // namespace

// Longer than the longest the broker itself makes a request wait: a
// connect waits for its service's start, which may come after a restart
// delay (at most kMaxRestartDelayMs) and take up to the policy's
// startTimeoutMs (at most kMaxStartTimeoutMs); a minute more on top.
const absl::Duration kDefaultTimeout =
    absl::Milliseconds(int64_t{kMaxRestartDelayMs} + int64_t{kMaxStartTimeoutMs} + 60 * 1000);

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return kExitOk;
    case absl::StatusCode::kPermissionDenied: return kExitPermissionDenied;
    case absl::StatusCode::kNotFound: return kExitNotFound;
    case absl::StatusCode::kUnavailable: return kExitUnavailable;
    case absl::StatusCode::kDeadlineExceeded: return kExitUnavailable;  // no answer in time
    default: return kExitFailure;
  }
}

namespace {

// Runs the command `args` asks for; RunCapctl checks its output after.
int RunCommand(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err) {
  std::string socket;
  absl::Duration timeout = kDefaultTimeout;
  size_t i = 0;
  auto usage = [&](absl::string_view why) {
    err << "capctl: " << why << "\n" << FullUsage();
    return kExitUsage;
  };
  // Global options come before the command, each at most once (as the
  // command's own: see ParseOptions).
  std::set<std::string> seen;
  while (i < args.size() && absl::string_view(args[i]).substr(0, 2) == "--" &&
         args[i] != "--help") {
    const absl::string_view arg = args[i];
    const absl::string_view name = arg.substr(0, arg.find('='));
    if (name != "--socket" && name != "--timeout") {
      return usage(absl::StrCat("unknown option ", Shown(arg)));
    }
    if (!seen.insert(std::string(name)).second) {
      return usage(absl::StrCat(name, " given twice"));
    }
    std::string value;
    if (name.size() < arg.size()) {
      value = std::string(arg.substr(name.size() + 1));
      i += 1;
    } else if (i + 1 < args.size()) {
      value = args[i + 1];
      // "--socket --timeout 5 list" lacks the socket's PATH: taken as the
      // value, "--timeout" became the path and "5" the command.
      if (absl::StartsWith(value, "--")) {
        return usage(absl::StrCat(
            name, " needs ", name == "--socket" ? "a PATH" : "SECONDS", ", not the option \"",
            Shown(value), "\"",
            name == "--socket" ? " (for a path that starts with \"--\", write --socket=PATH)"
                               : ""));
      }
      i += 2;
    } else {
      return usage(absl::StrCat(name, " needs a value"));
    }
    if (name == "--socket") {
      if (value.empty()) return usage("--socket needs a non-empty PATH");
      socket = std::move(value);
    } else {
      std::optional<absl::Duration> parsed = ParseTimeout(value);
      if (!parsed) {
        return usage(absl::StrCat("bad --timeout \"", Shown(value),
                                  "\": SECONDS, such as 30 or 0.5; 0 for no limit"));
      }
      timeout = *parsed;
    }
  }
  Capctl capctl(std::move(socket), timeout, out, err);
  return capctl.Run(args, i);
}

// What a command wrote must have reached `out`'s file: a full disk must not
// leave `capctl policy init > policy.capnp` a truncated file behind exit 0.
// Returns `code`, or kExitFailure after one line on `err` when the output
// failed and the command had succeeded (a command that failed has said why
// with its own code already).
int CheckOutput(std::ostream& out, std::ostream& err, int code) {
  // A write that failed during the command set badbit, and the stream
  // took nothing after. Cleared, the stream flushes again: capctl's stdout
  // (FdOutput) keeps what it could not write, so the retry fails the same
  // way and errno says why.
  const bool failed_before = out.fail();
  out.clear();
  errno = 0;
  out.flush();
  if (!failed_before && !out.fail()) return code;
  const int saved = errno;
  if (code != kExitOk) return code;
  err << "capctl: write to stdout: "
      << (saved != 0 ? strerror(saved) : "the output stream failed; output was lost") << "\n";
  return kExitFailure;
}

}  // namespace

int RunCapctl(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  return CheckOutput(out, err, RunCommand(args, out, err));
}

}  // namespace capbroker
