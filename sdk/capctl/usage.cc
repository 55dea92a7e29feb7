#include "sdk/capctl/usage.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace capbroker {
namespace {

struct Command {
  absl::string_view name;       // as typed: "policy check"
  absl::string_view arguments;  // what follows the name
  absl::string_view summary;    // what it does; '\n' between lines
  bool takes_socket;            // talks to the broker: --socket and --timeout apply
};

constexpr Command kCommands[] = {
    {"request", "NAME [--access read|write|readWrite|append]",
     "acquire capability NAME and describe what the broker granted", true},
    {"open", "DIR PATH [--access A] [--create] [--truncate] [--mode OCTAL]",
     "open PATH beneath directory capability DIR and describe it\n"
     "(--access as for request, default read, and needed with --create or --truncate;\n"
     "--mode of a file it creates, default 0600)",
     true},
    {"exec", "NAME[=FDNAME]... -- CMD [ARGS...]",
     "run CMD with the capabilities at fds 3.. and LISTEN_FDS, LISTEN_PID,\n"
     "LISTEN_FDNAMES, LISTEN_PIDFDID set, as systemd does (an inherited\n"
     "LISTEN_PIDFDID is replaced); what follows -- is CMD's, unread",
     true},
    {"list", "", "the capabilities you may request", true},
    {"status", "", "the broker's counters, its policy, and who you are to it", true},
    {"services", "", "the hosted services, their state and protections", true},
    {"connect", "SERVICE -- CMD [ARGS...]",
     "run CMD with a connection to SERVICE at fd 3; what follows -- is CMD's, unread", true},
    {"policy check", "FILE",
     "check FILE as capbrokerd loads it; the file's owner is\n"
     "judged as for a broker running as you (root: root only)",
     false},
    {"policy init", "", "print a commented starter policy", false},
    {"help", "[COMMAND]",
     "print this text, or COMMAND's usage alone (as COMMAND --help or -h does)", false},
};

constexpr char kSocketAndExitCodes[] =
    "--socket defaults to $CAPBROKER_SOCKET, else $XDG_RUNTIME_DIR/capbroker/broker.sock\n"
    "(root: only if root owns that directory and neither group nor others may write it)\n"
    "and then, if nothing is there, /run/capbroker/broker.sock.\n"
    "--timeout: how long to wait for each answer of the broker, in seconds (0.5 too;\n"
    "0: no limit); default 690, longer than a connect may wait for its service to start.\n"
    "exit codes: 0 ok, 1 failure, 2 usage, 3 permission denied, 4 not found,\n"
    "5 broker unavailable or no answer within --timeout, 127 exec/connect: command not run;\n"
    "policy check: 1 for any rejected file, a missing one included.\n";

// "NAME ARGUMENTS", without a trailing space when there are none.
std::string Synopsis(const Command& c) {
  return c.arguments.empty() ? std::string(c.name) : absl::StrCat(c.name, " ", c.arguments);
}

// The summary's lines, each indented by `indent`.
std::string Indented(absl::string_view summary, absl::string_view indent) {
  return absl::StrCat(indent, absl::StrReplaceAll(summary, {{"\n", absl::StrCat("\n", indent)}}),
                      "\n");
}

bool Under(const Command& c, absl::string_view command) {
  return c.name == command ||
         (absl::StartsWith(c.name, command) && c.name.size() > command.size() &&
          c.name[command.size()] == ' ');
}

}  // namespace

bool IsHelpFlag(absl::string_view arg) { return arg == "--help" || arg == "-h"; }

std::string FullUsage() {
  std::string text = "usage: capctl [--socket PATH] [--timeout SECONDS] COMMAND ...\n";
  for (const Command& c : kCommands) {
    absl::StrAppend(&text, "  ", Synopsis(c), "\n", Indented(c.summary, "      "));
  }
  absl::StrAppend(&text, kSocketAndExitCodes);
  return text;
}

std::string UsageOf(absl::string_view command) {
  std::string text;
  for (const Command& c : kCommands) {
    if (!Under(c, command)) continue;
    absl::StrAppend(&text, text.empty() ? "usage: " : "   or: ",
                    c.takes_socket ? "capctl [--socket PATH] [--timeout SECONDS] " : "capctl ",
                    Synopsis(c), "\n",
                    Indented(c.summary, "  "));
  }
  return text;
}

std::vector<std::string> CommandNames() {
  std::vector<std::string> names;
  for (const Command& c : kCommands) names.emplace_back(c.name);
  return names;
}

}  // namespace capbroker
