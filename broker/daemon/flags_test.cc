#include "broker/daemon/flags.h"

#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::daemon {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseFlagsTest, ParsesEverything) {
  ASSERT_OK_AND_ASSIGN(
      DaemonFlags f,
      ParseFlags({"--policy", "/p", "--socket=/s", "--socket-mode", "0660",
                  "--audit-log", "/a", "--ready-fd", "5", "--max-connections",
                  "10", "--max-connections-per-uid=3", "--max-queued-reply-bytes",
                  "1048576", "--max-queued-reply-fds", "7"}));
  EXPECT_EQ(f.policy_path, "/p");
  EXPECT_EQ(f.socket_path, "/s");
  EXPECT_EQ(*f.socket_mode, 0660u);
  EXPECT_EQ(f.audit_log_path, "/a");
  EXPECT_EQ(*f.ready_fd, 5);
  EXPECT_EQ(f.limits.max_connections, 10u);
  EXPECT_EQ(f.limits.max_connections_per_uid, 3u);
  EXPECT_EQ(f.limits.max_queued_bytes_total, 1048576u);
  EXPECT_EQ(f.limits.max_queued_fds_total, 7u);
}

TEST(ParseFlagsTest, QueuedReplyFdsAreACount) {
  ASSERT_OK_AND_ASSIGN(DaemonFlags f, ParseFlags({"--policy", "/p"}));
  EXPECT_EQ(f.limits.max_queued_fds_total, 4096u);
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--max-queued-reply-fds", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("from 1")));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--max-queued-reply-fds=many"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ParseFlagsTest, QueuedReplyBytesHoldAtLeastTheLargestReply) {
  ASSERT_OK_AND_ASSIGN(DaemonFlags f, ParseFlags({"--policy", "/p"}));
  EXPECT_EQ(f.limits.max_queued_bytes_total, 64u * 1024 * 1024);
  // The refusal says why the least is 65536.
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--max-queued-reply-bytes", "65535"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--max-queued-reply-bytes wants a decimal number from 65536 to "
                       "1099511627776, not '65535'; the least, 65536, is the largest reply: "
                       "every reply is queued on its way out"));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--max-queued-reply-bytes=2000000000000"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(ParseFlags({"--policy", "/p", "--max-queued-reply-bytes=65536"}));
}

// connect(2) takes write permission on the socket: a broker run by a user
// with a --socket-mode that leaves out u+w could serve nobody of its own
// user (root passes permission checks).
TEST(ParseFlagsTest, AUsersSocketModeMustLetTheUserConnect) {
  for (const char* mode : {"0400", "0466", "0066"}) {
    SCOPED_TRACE(mode);
    EXPECT_THAT(ParseFlags({"--policy", "/p", "--socket-mode", mode}, 65534),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(absl::StrCat("--socket-mode ", mode)),
                               HasSubstr("uid 65534"), HasSubstr("u+w"))));
    EXPECT_OK(ParseFlags({"--policy", "/p", "--socket-mode", mode}, 0));
  }
  EXPECT_OK(ParseFlags({"--policy", "/p", "--socket-mode", "0600"}, 65534));
  EXPECT_OK(ParseFlags({"--policy", "/p", "--socket-mode", "0200"}, 65534));
}

TEST(ParseFlagsTest, HostileCommandLines) {
  EXPECT_THAT(ParseFlags({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("--policy FILE is required")));
  EXPECT_THAT(ParseFlags({"--policy"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("needs a value")));
  EXPECT_THAT(ParseFlags({"--policy="}), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("needs a value")));
  for (const char* help : {"--help=yes", "--help=", "--help=no"}) {
    EXPECT_THAT(ParseFlags({help}),
                StatusIs(absl::StatusCode::kInvalidArgument, "--help takes no value"))
        << help;
  }
  EXPECT_THAT(ParseFlags({"-h=yes"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown argument")));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--bogus"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'--bogus'")));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--socket-mode", "999"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("octal")));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--socket-mode", "01777"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("octal")));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--ready-fd", "-1"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--ready-fd wants a decimal number from 0 to 2147483647 (digits only, "
                       "no leading 0), not '-1'"));
  // The standard streams: closing one after READY would hand its number to
  // the broker's next fd, and the log (and audit lines) would go astray.
  for (const char* standard : {"0", "1", "2"}) {
    EXPECT_THAT(ParseFlags({"--policy", "/p", "--ready-fd", standard}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         absl::StrCat("--ready-fd ", standard, ": fds 0, 1 and 2 are stdin, "
                                      "stdout and stderr, which capbrokerd keeps open; pass "
                                      "the pipe as fd 3 or above")));
  }
  EXPECT_OK(ParseFlags({"--policy", "/p", "--ready-fd", "3"}));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--max-connections", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("from 1")));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--max-connections", "99999999999999999999"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseFlags({"--policy", "/p", std::string("--socket\0x", 10)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Each number flag reads digits alone (sdk/base/decimal.h): what
// SimpleAtoi also took, blanks, a sign or a leading 0 around a number in
// range, is refused, naming the flag and showing the value.
TEST(ParseFlagsTest, ANumberIsDigitsAlone) {
  struct Case {
    const char* flag;
    const char* number;  // in range
  };
  for (const Case& c : {Case{"--ready-fd", "3"}, Case{"--max-connections", "5"},
                        Case{"--max-connections-per-uid", "5"},
                        Case{"--max-queued-reply-bytes", "65536"},
                        Case{"--max-queued-reply-fds", "5"}}) {
    EXPECT_OK(ParseFlags({"--policy", "/p", c.flag, c.number})) << c.flag;
    for (const std::string& form :
         {absl::StrCat(" ", c.number), absl::StrCat(c.number, " "), absl::StrCat("+", c.number),
          absl::StrCat("0", c.number), absl::StrCat("-", c.number)}) {
      SCOPED_TRACE(absl::StrCat(c.flag, " '", form, "'"));
      EXPECT_THAT(ParseFlags({"--policy", "/p", c.flag, form}),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           AllOf(HasSubstr(absl::StrCat(c.flag, " wants ")),
                                 HasSubstr("(digits only, no leading 0)"),
                                 HasSubstr(absl::StrCat(", not '", form, "'")))));
    }
  }
}

// An argument is echoed as capctl echoes one (sdk/base/shown_text.h):
// escaped, so that an ESC or a newline in it reaches neither the terminal
// nor the journal as such, and bounded, so that 10 KB of it does not fill
// either.
TEST(ParseFlagsTest, AHostileArgumentIsEchoedEscapedAndBounded) {
  const std::string hostile =
      absl::StrCat("\x1b]0;owned\a\ncapbrokerd: fake line", std::string(10000, 'A'), "\x1b[2J");
  const std::vector<std::vector<std::string>> echoes = {
      {"--policy", "/p", hostile},
      {"--policy", "/p", "--cgroup", hostile},
      {"--policy", "/p", "--socket-mode", hostile},
      {"--policy", "/p", "--ready-fd", hostile},
      {"--policy", "/p", "--max-connections", hostile},
      {"--policy", "/p", "--max-queued-reply-bytes", hostile},
  };
  for (const std::vector<std::string>& args : echoes) {
    SCOPED_TRACE(args.size() == 3 ? "unknown argument" : args[2]);
    const absl::StatusOr<DaemonFlags> flags = ParseFlags(args, 0);
    ASSERT_THAT(flags, StatusIs(absl::StatusCode::kInvalidArgument));
    const std::string message(flags.status().message());
    EXPECT_THAT(message, AllOf(HasSubstr("'\\x1b]0;owned\\x07\\x0acapbrokerd: fake line"),
                               HasSubstr("bytes left out) ..."), HasSubstr("\\x1b[2J'"),
                               Not(HasSubstr("\x1b")), Not(HasSubstr("\n"))));
    EXPECT_LT(message.size(), 500u);  // of 10,000 bytes given
  }
}

// A drop-in or wrapper that adds a second --policy or --socket must not
// change what the broker enforces or where it listens without a word.
TEST(ParseFlagsTest, AFlagGivenTwiceIsRefused) {
  EXPECT_THAT(ParseFlags({"--policy", "/nonexistent", "--policy", "p.capnp", "--socket", "A",
                          "--socket", "B"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--policy given twice"));
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--socket", "A", "--socket=B"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--socket given twice"));
  // Every flag, with a value it would take once.
  const std::vector<std::vector<std::string>> once = {
      {"--socket-mode", "0600"}, {"--audit-log", "/a"},
      {"--ready-fd", "3"},       {"--max-connections", "5"},
      {"--cgroup", "/c"},        {"--max-connections-per-uid", "5"},
      {"--max-queued-reply-bytes", "1048576"}, {"--max-queued-reply-fds", "5"}};
  for (const std::vector<std::string>& flag : once) {
    SCOPED_TRACE(flag[0]);
    std::vector<std::string> args = {"--policy", "/p", flag[0], flag[1]};
    EXPECT_OK(ParseFlags(args, 0));
    args.push_back(absl::StrCat(flag[0], "=", flag[1]));
    EXPECT_THAT(ParseFlags(args, 0), StatusIs(absl::StatusCode::kInvalidArgument,
                                              absl::StrCat(flag[0], " given twice")));
  }
  EXPECT_THAT(ParseFlags({"-h", "--help"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--help given twice"));
}

// Octal digits alone: strtoul would take blanks and a sign, and "-0" is 0.
TEST(ParseFlagsTest, SocketModeIsOneToFourOctalDigits) {
  for (const char* mode : {" 0660", "+0660", "-0", "0660 ", "00660", "0x1b6", "", "8"}) {
    SCOPED_TRACE(mode);
    EXPECT_THAT(ParseFlags({"--policy", "/p", absl::StrCat("--socket-mode=", mode)}, 0),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         mode[0] == '\0' ? HasSubstr("needs a value") : HasSubstr("octal")));
  }
  for (const auto& [text, mode] : std::vector<std::pair<const char*, mode_t>>{
           {"0", 0}, {"660", 0660}, {"0777", 0777}, {"0000", 0}}) {
    SCOPED_TRACE(text);
    ASSERT_OK_AND_ASSIGN(DaemonFlags f, ParseFlags({"--policy", "/p", "--socket-mode", text}, 0));
    EXPECT_EQ(*f.socket_mode, mode);
  }
}

// Under socket activation the unit's ListenSequentialPacket= sets the
// path: a --socket the broker would not use is a usage error, not ignored.
TEST(CheckSocketFlagTest, RefusesASocketPathWhenSystemdPassedTheSocket) {
  ASSERT_OK_AND_ASSIGN(DaemonFlags named,
                       ParseFlags({"--policy", "/p", "--socket", "/x/wanted.sock"}, 0));
  EXPECT_THAT(CheckSocketFlag(named, true),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--socket /x/wanted.sock"),
                             HasSubstr("ListenSequentialPacket= sets its path"))));
  EXPECT_OK(CheckSocketFlag(named, false));
  ASSERT_OK_AND_ASSIGN(DaemonFlags unnamed, ParseFlags({"--policy", "/p"}, 0));
  EXPECT_OK(CheckSocketFlag(unnamed, true));
  // --help prints the usage, whatever else is given.
  ASSERT_OK_AND_ASSIGN(DaemonFlags help, ParseFlags({"--help", "--socket", "/x/s"}, 0));
  EXPECT_OK(CheckSocketFlag(help, true));
}

// As systemd sets them for this process.
class ListenFdsTest : public ::testing::Test {
 protected:
  void Pass(const char* count) {
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", count, 1);
  }
  void TearDown() override {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
  }
};

TEST_F(ListenFdsTest, HelpWinsOverASocketFlagUnderActivation) {
  Pass("1");
  ASSERT_OK_AND_ASSIGN(DaemonFlags f, ParseFlags({"--help", "--socket", "/x/s"}));
  EXPECT_TRUE(f.help);
  EXPECT_THAT(ParseFlags({"--policy", "/p", "--socket", "/x/s"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("leave --socket out")));
}

// A count the broker refuses is what is wrong, not --socket: left for the
// start, which reports the count (server::SystemdSocketCount).
TEST_F(ListenFdsTest, ACountOtherThanOneIsNotReportedAsASocketFlagToLeaveOut) {
  for (const char* count : {"0", "2"}) {
    SCOPED_TRACE(count);
    Pass(count);
    EXPECT_OK(ParseFlags({"--policy", "/p", "--socket", "/x/s"}).status());
  }
}

// As the code does (wire::ForeignRuntimeDir) and README says: a root
// broker passes over a runtime directory group or others may write.
TEST(UsageTest, SaysWhenRootPassesOverXdgRuntimeDir) {
  EXPECT_THAT(Usage(), HasSubstr("only\n"
                                 "                      if root owns that directory and neither "
                                 "group\n"
                                 "                      nor others may write it)"));
}

TEST(UsageTest, NamesTheSignalsAndThatEachOptionIsGivenOnce) {
  EXPECT_THAT(Usage(), AllOf(HasSubstr("SIGTERM or SIGINT stop it"),
                             HasSubstr("SIGHUP reloads the policy"),
                             HasSubstr("reopens --audit-log FILE"),
                             HasSubstr("Each option may be given once")));
}

TEST(ParseFlagsTest, HelpNeedsNoPolicy) {
  ASSERT_OK_AND_ASSIGN(DaemonFlags f, ParseFlags({"--help"}));
  EXPECT_TRUE(f.help);
}

}  // namespace
}  // namespace capbroker::daemon
