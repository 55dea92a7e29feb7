// capctl's help: `capctl COMMAND --help` (or -h) and `capctl help COMMAND`
// print COMMAND's usage on stdout and exit 0, for every command; no broker
// is needed for it. Usage errors of the command line as a whole, too.
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "sdk/capctl/capctl.h"
#include "sdk/capctl/usage.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result Invoke(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int code = RunCapctl(args, out, err);
  return {code, out.str(), err.str()};
}

// `command` ("policy check") and then `more`, as separate arguments.
std::vector<std::string> Args(absl::string_view command, std::vector<std::string> more) {
  std::vector<std::string> args = absl::StrSplit(command, ' ');
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST(CapctlHelpTest, TheTableHasEveryCommand) {
  EXPECT_THAT(CommandNames(), IsSupersetOf({"request", "open", "exec", "list", "status", "services",
                                            "connect", "policy check", "policy init", "help"}));
}

TEST(CapctlHelpTest, EveryCommandsHelpPrintsItsUsage) {
  for (const std::string& command : CommandNames()) {
    if (command == "help") continue;  // below: its help is the whole text
    for (const char* flag : {"--help", "-h"}) {
      SCOPED_TRACE(absl::StrCat(command, " ", flag));
      Result r = Invoke(Args(command, {flag}));
      EXPECT_EQ(r.code, kExitOk) << r.err;
      EXPECT_EQ(r.err, "");
      EXPECT_EQ(r.out, UsageOf(command));
      EXPECT_THAT(r.out, StartsWith("usage: capctl "));
      EXPECT_THAT(r.out, HasSubstr(absl::StrCat(" ", command)));
    }
  }
}

TEST(CapctlHelpTest, HelpForAGroupListsItsCommands) {
  Result r = Invoke({"policy", "--help"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, UsageOf("policy"));
  EXPECT_THAT(r.out, HasSubstr("capctl policy check FILE\n"));
  EXPECT_THAT(r.out, HasSubstr("capctl policy init\n"));
}

TEST(CapctlHelpTest, HelpAfterTheSocketOption) {
  Result r = Invoke({"--socket", "/nonexistent/broker.sock", "request", "--help"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, UsageOf("request"));
}

TEST(CapctlHelpTest, TheWholeTextListsEveryCommand) {
  for (const char* help : {"help", "--help", "-h"}) {
    SCOPED_TRACE(help);
    Result r = Invoke({help});
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_EQ(r.out, FullUsage());
  }
  EXPECT_EQ(Invoke({"help", "--help"}).out, FullUsage());
  for (const std::string& command : CommandNames()) {
    EXPECT_THAT(FullUsage(), HasSubstr(absl::StrCat("\n  ", command))) << command;
  }
  EXPECT_EQ(UsageOf("frobnicate"), "");
  EXPECT_EQ(UsageOf("pol"), "");
}

// Command lines and the one line each makes capctl write: each a usage
// error, that line then the whole usage text on stderr, nothing on stdout.
using UsageCases = std::vector<std::pair<std::vector<std::string>, std::string>>;
void ExpectUsageErrorsShowingTheWholeText(const UsageCases& cases) {
  for (const auto& [args, line] : cases) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = Invoke(args);
    EXPECT_EQ(r.code, kExitUsage);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, absl::StrCat(line, FullUsage()));
  }
}

// `capctl help COMMAND` (or --help COMMAND, -h COMMAND) prints what
// `COMMAND --help` prints; it once printed the whole text, whatever
// followed.
TEST(CapctlHelpTest, HelpWithACommandPrintsItsUsage) {
  for (const std::string& command : CommandNames()) {
    for (const char* help : {"help", "--help", "-h"}) {
      SCOPED_TRACE(absl::StrCat(help, " ", command));
      Result r = Invoke(Args(absl::StrCat(help, " ", command), {}));
      EXPECT_EQ(r.code, kExitOk) << r.err;
      EXPECT_EQ(r.err, "");
      EXPECT_EQ(r.out, UsageOf(command));
      EXPECT_NE(r.out, FullUsage());
    }
  }
  EXPECT_EQ(Invoke({"help", "policy"}).out, UsageOf("policy"));
  EXPECT_THAT(UsageOf("help"), StartsWith("usage: capctl help [COMMAND]\n"));
}

// A word after help that names no command is a usage error (it once exited
// 0 with the whole text): the reason, then the whole text, as for an
// unknown command.
TEST(CapctlHelpTest, HelpWithAnUnknownCommandIsAUsageError) {
  const UsageCases cases = {
      {{"help", "extra"}, "capctl: help: unknown command \"extra\"\n"},
      {{"help", "request", "extra"}, "capctl: help: unknown command \"request extra\"\n"},
      {{"help", "pol"}, "capctl: help: unknown command \"pol\"\n"},
      {{"help", ""}, "capctl: help: unknown command \"\"\n"},
      {{"help", "--help", "request"}, "capctl: help: unknown command \"--help request\"\n"},
      {{"-h", "a\nb"}, "capctl: help: unknown command \"a\\x0ab\"\n"},
  };
  ExpectUsageErrorsShowingTheWholeText(cases);
}

// --socket and --timeout do not take an option as their value: "--socket
// --timeout 5 list" once took "--timeout" as the socket's path and "5" as
// the command. A path that starts with "--" is written --socket=PATH.
TEST(CapctlHelpTest, AGlobalOptionsValueIsNoOption) {
  const UsageCases cases = {
      {{"--socket", "--timeout", "5", "list"},
       "capctl: --socket needs a PATH, not the option \"--timeout\" (for a path that starts "
       "with \"--\", write --socket=PATH)\n"},
      {{"--socket", "--", "list"},
       "capctl: --socket needs a PATH, not the option \"--\" (for a path that starts with "
       "\"--\", write --socket=PATH)\n"},
      {{"--timeout", "--socket", "/run/x.sock", "list"},
       "capctl: --timeout needs SECONDS, not the option \"--socket\"\n"},
      {{"--socket", "/run/x.sock", "--timeout", "--help"},
       "capctl: --timeout needs SECONDS, not the option \"--help\"\n"},
  };
  ExpectUsageErrorsShowingTheWholeText(cases);
  // Written with '=', such a path is taken: no broker there.
  Result r = Invoke({"--socket=--odd.sock", "--timeout=5", "list"});
  EXPECT_EQ(r.code, kExitUnavailable) << r.err;
  EXPECT_THAT(r.err, StartsWith("capctl: list: "));
  EXPECT_THAT(r.err, HasSubstr("--odd.sock"));
}

// Only the first argument after the command asks for help; later, --help
// is an option the command does not take, and other unknown options stay
// usage errors.
TEST(CapctlHelpTest, UnknownOptionsAreStillUsageErrors) {
  const std::vector<std::vector<std::string>> usage_errors = {
      {"request", "motd", "--help"},
      {"request", "--frobnicate"},
      {"open", "--frobnicate"},
      {"open", "spool", "job", "-h", "--verbose"},
      {"list", "--all"},
      {"exec", "motd", "--help", "--", "/bin/true"},
      {"policy", "check", "a.capnp", "--help"},
      {"policy", "init", "--verbose"},
      {"policy", "--frobnicate"},
  };
  for (const std::vector<std::string>& args : usage_errors) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    Result r = Invoke(args);
    EXPECT_EQ(r.code, kExitUsage);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, StartsWith("capctl: "));
  }
}

// A usage error of a known command: the reason on one line, then that
// command's usage alone (as `COMMAND --help` prints it), not every
// command's; the whole text only when the command is missing or unknown.
TEST(CapctlHelpTest, AUsageErrorShowsTheCommandsUsageAlone) {
  struct Case {
    std::vector<std::string> args;
    std::string usage_of;  // "": the whole text
  };
  const std::vector<Case> cases = {
      {{"request"}, "request"},
      {{"request", "motd", "--help"}, "request"},
      {{"request", "motd", "--access", "execute"}, "request"},
      {{"open", "--frobnicate"}, "open"},
      {{"exec", "motd", "/bin/true"}, "exec"},
      {{"list", "extra"}, "list"},
      {{"status", "extra"}, "status"},
      {{"services", "extra"}, "services"},
      {{"connect", "kvstore"}, "connect"},
      {{"policy"}, "policy"},
      {{"policy", "frob"}, "policy"},
      {{"policy", "check"}, "policy check"},
      {{"policy", "init", "x"}, "policy init"},
      {{}, ""},
      {{"frobnicate"}, ""},
      {{"--verbose", "list"}, ""},
      {{"--socket"}, ""},
      {{"--socket", "", "list"}, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.args, " "));
    Result r = Invoke(c.args);
    EXPECT_EQ(r.code, kExitUsage);
    EXPECT_EQ(r.out, "");
    ASSERT_THAT(r.err, StartsWith("capctl: "));
    size_t first_line = r.err.find('\n');
    ASSERT_NE(first_line, std::string::npos);
    EXPECT_EQ(r.err.substr(first_line + 1), c.usage_of.empty() ? FullUsage() : UsageOf(c.usage_of));
  }
  Result request = Invoke({"request"});
  EXPECT_THAT(request.err, HasSubstr("capctl [--socket PATH] [--timeout SECONDS] request NAME"));
  EXPECT_THAT(request.err, Not(HasSubstr("exec NAME")));
}

// The default timeout, and the usage text that names it, outlast the
// longest wait the broker imposes (a restart delay, then a service's
// start: 30 s and 600 s at most).
TEST(CapctlHelpTest, TheDefaultTimeoutIsNamedAndOutlastsAServicesStart) {
  EXPECT_GT(kDefaultTimeout, absl::Seconds(30 + 600));
  EXPECT_EQ(kDefaultTimeout, absl::Seconds(690));  // as usage.cc and capctl.h say
  EXPECT_THAT(FullUsage(), HasSubstr("[--timeout SECONDS]"));
  EXPECT_THAT(FullUsage(), HasSubstr("default 690,"));
}

}  // namespace
}  // namespace capbroker
