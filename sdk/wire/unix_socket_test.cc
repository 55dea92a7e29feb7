#include "sdk/wire/unix_socket.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/raw_send.h"

namespace capbroker::wire {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(MakeUnixAddressTest, AcceptsLongestPath) {
  std::string path(sizeof(sockaddr_un::sun_path) - 1, 'a');
  ASSERT_OK_AND_ASSIGN(UnixAddress a, MakeUnixAddress(path));
  EXPECT_EQ(std::string(a.addr.sun_path), path);
}

TEST(MakeUnixAddressTest, RefusesPathThatDoesNotFit) {
  std::string path(sizeof(sockaddr_un::sun_path), 'a');
  EXPECT_THAT(MakeUnixAddress(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at most 107 fit in sun_path")));
}

TEST(MakeUnixAddressTest, RefusesEmptyAndNul) {
  EXPECT_THAT(MakeUnixAddress(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(MakeUnixAddress(std::string("a\0b", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
}

TEST(ConnectSeqpacketTest, MissingPathIsNotFound) {
  EXPECT_THAT(ConnectSeqpacket("/nonexistent-capbroker/broker.sock"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent-capbroker/broker.sock")));
}

TEST(ConnectSeqpacketTest, NobodyListeningIsUnavailable) {
  char dir[] = "/tmp/capbroker-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/s";
  {
    // Bind without listening: connect() is refused.
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    ASSERT_OK_AND_ASSIGN(UnixAddress a, MakeUnixAddress(path));
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
    close(fd);
  }
  EXPECT_THAT(ConnectSeqpacket(path),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("no broker is listening")));
  unlink(path.c_str());
  rmdir(dir);
}

// A socket of another type at the path (another program's stream socket)
// answers connect() with EPROTOTYPE: not a broker's, and not a stale
// broker socket either (the broker must not remove it).
TEST(ConnectSeqpacketTest, AStreamSocketIsNotASeqpacketSocket) {
  char dir[] = "/tmp/capbroker-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/s";
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ASSERT_OK_AND_ASSIGN(UnixAddress a, MakeUnixAddress(path));
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  absl::StatusOr<UniqueFd> connected = ConnectSeqpacket(path);
  EXPECT_THAT(connected, StatusIs(absl::StatusCode::kFailedPrecondition,
                                  AllOf(HasSubstr(path), HasSubstr("SOCK_SEQPACKET"))));
  EXPECT_TRUE(IsOtherSocketType(connected.status()));
  EXPECT_FALSE(IsOtherSocketType(ConnectSeqpacket("/nonexistent-capbroker/s").status()));
  close(fd);
  unlink(path.c_str());
  rmdir(dir);
}

// A listener that stopped accepting (a broker whose only thread is stuck)
// has a full queue once `backlog` connections wait: connect(2) then waits
// for room, as long as the timeout allows. A connection made within it
// keeps no send timeout.
TEST(ConnectSeqpacketTest, AFullListenQueueEndsAtTheTimeout) {
  char dir[] = "/tmp/capbroker-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/s";
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  ASSERT_OK_AND_ASSIGN(UnixAddress a, MakeUnixAddress(path));
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
  ASSERT_EQ(listen(listener.get(), 0), 0);  // room for one
  ASSERT_OK_AND_ASSIGN(UniqueFd first, ConnectSeqpacket(path, absl::Seconds(30)));
  timeval send_timeout{1, 1};
  socklen_t length = sizeof(send_timeout);
  ASSERT_EQ(getsockopt(first.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, &length), 0);
  EXPECT_EQ(send_timeout.tv_sec, 0);
  EXPECT_EQ(send_timeout.tv_usec, 0);
  EXPECT_THAT(ConnectSeqpacket(path, absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr(path), HasSubstr("within 20ms"),
                             HasSubstr("listen queue is full"))));
  listener.reset();
  unlink(path.c_str());
  rmdir(dir);
}

// A timeout used up before connect(2) is tried still gets one try, so that
// the error says what is really wrong (here: no socket), not "full queue".
TEST(ConnectSeqpacketTest, ATimeoutTooShortStillTriesOnce) {
  EXPECT_THAT(ConnectSeqpacket("/nonexistent/capbroker-test.sock", absl::Nanoseconds(1)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/")));
}

TEST(SeqpacketPairTest, PairIsConnected) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  ASSERT_EQ(write(pair.first.get(), "hi", 2), 2);
  char buf[4];
  EXPECT_EQ(read(pair.second.get(), buf, sizeof(buf)), 2);
}

// Sends one byte with `fd` attached on `sock`; 0 or the errno.
int SendFd(int sock, int fd) {
  const uint8_t byte = 0;
  return capbroker::testing::RawSend(sock, {&byte, 1}, {&fd, 1}, MSG_DONTWAIT);
}

class RefuseFdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
    absl::Status refused = RefuseFds(pair.second.get());
    if (refused.code() == absl::StatusCode::kUnimplemented) {
      GTEST_SKIP() << refused.message();
    }
    ASSERT_OK(refused);
  }
};

TEST_F(RefuseFdsTest, ThePeersSendmsgWithFdsFailsAndNothingElseChanges) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  EXPECT_TRUE(TakesFds(pair.second.get()).value_or(false));
  ASSERT_OK(RefuseFds(pair.second.get()));
  EXPECT_FALSE(TakesFds(pair.second.get()).value_or(true));
  EXPECT_EQ(SendFd(pair.first.get(), STDIN_FILENO), EPERM);
  // Datagrams without fds pass, and the refusing end can still send fds.
  EXPECT_EQ(write(pair.first.get(), "hi", 2), 2);
  EXPECT_EQ(SendFd(pair.second.get(), STDIN_FILENO), 0);
}

// A connection takes its listener's option when the client connects, even
// before it is accepted; one made before the listener refused fds keeps
// taking them (the broker's case for a socket from systemd, see
// BrokerLoop::Admit).
TEST_F(RefuseFdsTest, AConnectionTakesItsListenersOptionWhenItIsMade) {
  char dir[] = "/tmp/capbroker-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/s";
  UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_OK_AND_ASSIGN(UnixAddress a, MakeUnixAddress(path));
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
  ASSERT_EQ(listen(listener.get(), 4), 0);
  ASSERT_OK_AND_ASSIGN(UniqueFd early, ConnectSeqpacket(path));
  ASSERT_OK(RefuseFds(listener.get()));
  ASSERT_OK_AND_ASSIGN(UniqueFd late, ConnectSeqpacket(path));
  // Not accepted yet: the kernel refuses for the connection made after.
  EXPECT_EQ(SendFd(late.get(), STDIN_FILENO), EPERM);
  EXPECT_EQ(SendFd(early.get(), STDIN_FILENO), 0);
  UniqueFd first(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  UniqueFd second(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(TakesFds(first.get()).value_or(false));
  EXPECT_FALSE(TakesFds(second.get()).value_or(true));
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace capbroker::wire
