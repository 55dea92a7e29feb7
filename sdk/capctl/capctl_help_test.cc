// capctl's help: `capctl COMMAND --help` (or -h) prints COMMAND's usage on
// stdout and exits 0, for every command; no broker is needed for it.
#include <sstream>
#include <string>
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
