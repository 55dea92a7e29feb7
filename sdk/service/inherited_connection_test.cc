#include "sdk/service/inherited_connection.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/child_exit.h"

namespace capbroker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseInheritedConnectionTest, OneFdForThisProcessIsFdThree) {
  ASSERT_OK_AND_ASSIGN(int fd, ParseInheritedConnection("1", "77", 77));
  EXPECT_EQ(fd, 3);
}

TEST(ParseInheritedConnectionTest, RefusesWhatCapctlConnectDoesNotSet) {
  EXPECT_THAT(ParseInheritedConnection(nullptr, "77", 77),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("capctl connect")));
  EXPECT_THAT(ParseInheritedConnection("2", "77", 77),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("LISTEN_FDS wants 1, not '2'")));
  EXPECT_THAT(ParseInheritedConnection("1x", "77", 77),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LISTEN_FDS")));
  EXPECT_THAT(ParseInheritedConnection("1", "78", 77),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not this process")));
  EXPECT_THAT(ParseInheritedConnection("1", nullptr, 77),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LISTEN_PID")));
}

// capctl connect writes both numbers in digits alone: nothing else is read
// as the number it resembles.
TEST(ParseInheritedConnectionTest, ANumberIsDigitsAlone) {
  for (const char* form : {" 1", "1 ", "+1", "01", "1\n"}) {
    SCOPED_TRACE(form);
    EXPECT_THAT(ParseInheritedConnection(form, "1", 1),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("LISTEN_FDS wants 1 (digits only"),
                               Not(HasSubstr("\n")), HasSubstr("capctl connect"))));
    EXPECT_THAT(ParseInheritedConnection("1", form, 1),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("LISTEN_PID wants a decimal number"),
                               Not(HasSubstr("\n")), HasSubstr("capctl connect"))));
  }
}

TEST(TakeInheritedConnectionTest, RefusesAnFdThatIsNotASeqpacketSocket) {
  // Whatever fd 3 is in the test runner (if anything), a pipe is not it.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  int saved = dup(3);
  ASSERT_EQ(dup2(p[0], 3), 3);
  setenv("LISTEN_FDS", "1", 1);
  setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_THAT(TakeInheritedConnection(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a SOCK_SEQPACKET")));
  EXPECT_EQ(getenv("LISTEN_FDS"), nullptr);
  EXPECT_NE(fcntl(3, F_GETFD), -1);  // not closed: it was not ours
  if (saved >= 0) {
    dup2(saved, 3);
    close(saved);
  } else {
    close(3);
  }
  close(p[0]);
  close(p[1]);
}

// The connection capctl connect passes is inherited without close-on-exec,
// and the variables that announce it would mislead a program this one
// runs: TakeInheritedConnection makes it close-on-exec and removes them.
// In a child, whose fd 3 is the test's to take.
TEST(TakeInheritedConnectionTest, MakesTheConnectionCloseOnExecAndRemovesTheVariables) {
  EXPECT_EQ(testing::ExitCodeInChild([] {
              // Fd 3 taken first, so that the pair does not land there.
              const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
              if (null < 0 || dup2(null, 3) < 0) return 9;
              absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
              if (!pair.ok()) return 10;
              // dup2 leaves the copy without close-on-exec, as exec leaves it.
              if (dup2(pair->second.get(), 3) != 3) return 11;
              const std::string pid = std::to_string(getpid());
              if (setenv("LISTEN_FDS", "1", 1) != 0 || setenv("LISTEN_PID", pid.c_str(), 1) != 0 ||
                  setenv("LISTEN_FDNAMES", "connection", 1) != 0) {
                return 12;
              }
              absl::StatusOr<UniqueFd> connection = TakeInheritedConnection();
              if (!connection.ok() || connection->get() != 3) return 13;
              if (fcntl(3, F_GETFD) != FD_CLOEXEC) return 14;
              for (const char* name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"}) {
                if (getenv(name) != nullptr) return 15;
              }
              return 0;
            }),
            0);
}

}  // namespace
}  // namespace capbroker
