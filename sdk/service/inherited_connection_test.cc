#include "sdk/service/inherited_connection.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

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

}  // namespace
}  // namespace capbroker
