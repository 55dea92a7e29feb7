#include "broker/server/readiness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::server {
namespace {

using ::testing::HasSubstr;

TEST(ReadyFdTest, WritesLineAndCloses) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd reader(fds[0]);
  ASSERT_OK_AND_ASSIGN(ReadyFd ready, ReadyFd::Claim(fds[1]));
  ASSERT_OK(ready.Notify("READY"));
  char buf[16] = {};
  EXPECT_EQ(read(reader.get(), buf, sizeof(buf)), 6);
  EXPECT_STREQ(buf, "READY\n");
  EXPECT_EQ(read(reader.get(), buf, sizeof(buf)), 0);  // the write end was closed
}

TEST(ReadyFdTest, ReportsAFailedWriteWithItsErrno) {
  int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_OK_AND_ASSIGN(ReadyFd ready, ReadyFd::Claim(fd));
  EXPECT_THAT(ready.Notify("READY"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("write(ready fd ", fd, "): No space left on device")));
  EXPECT_FALSE(testing::IsFdOpen(fd)) << "written once, then closed";
}

// A write cut short sets no errno: it is reported as what it is, not with
// whatever errno an earlier call left. A file at RLIMIT_FSIZE takes the
// first bytes only (the kernel writes up to the limit, then refuses).
TEST(ReadyFdTest, ReportsAShortWriteAsShort) {
  testing::TempDir dir;
  const std::string path = dir.Join("ready");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_OK_AND_ASSIGN(ReadyFd ready, ReadyFd::Claim(fd));
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const rlimit three_bytes = {3, saved.rlim_max};
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &three_bytes), 0);
  errno = EBADF;  // left over from some earlier call
  // Nothing else is written (no test output, which may go to a file) until
  // the limit is back.
  absl::Status said = ready.Notify("READY");
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  EXPECT_THAT(said, StatusIs(absl::StatusCode::kResourceExhausted,
                             absl::StrCat("write(ready fd ", fd, "): wrote 3 of 6 bytes")));
  EXPECT_EQ(testing::ReadWholeFile(path), "REA");
}

// A supervisor passes the pipe without close-on-exec (it must survive the
// exec of capbrokerd); services the broker starts must not inherit it, or
// the supervisor would not see end of file while they run.
TEST(ReadyFdTest, ClaimMakesItCloseOnExec) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, 0), 0);
  UniqueFd reader(fds[0]);
  ASSERT_FALSE(testing::IsCloseOnExec(fds[1]));
  ASSERT_OK_AND_ASSIGN(ReadyFd ready, ReadyFd::Claim(fds[1]));
  EXPECT_TRUE(testing::IsCloseOnExec(fds[1]));
}

// A number the supervisor did not pass is free at start: later it would be
// one of the broker's own fds, written into and closed.
TEST(ReadyFdTest, RefusesAnFdThatIsNotOpen) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  close(fds[0]);
  close(fds[1]);
  EXPECT_THAT(ReadyFd::Claim(fds[1]),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("--ready-fd ", fds[1], ": fd ", fds[1],
                                    " is not open; start capbrokerd with the write end of a "
                                    "pipe as fd ", fds[1], ", or leave --ready-fd out")));
}

TEST(ReadyFdTest, RefusesAReadOnlyFd) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd writer(fds[1]);
  UniqueFd reader(fds[0]);
  EXPECT_THAT(ReadyFd::Claim(fds[0]),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("read-only")));
  EXPECT_TRUE(testing::IsFdOpen(fds[0])) << "a refused fd is not the broker's to close";
}

TEST(ReadyFdTest, RefusesTheStandardStreams) {
  for (int fd : {0, 1, 2}) {
    EXPECT_THAT(ReadyFd::Claim(fd), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("standard streams")));
    EXPECT_TRUE(testing::IsFdOpen(fd));
  }
}

TEST(NotifySystemdTest, SendsReadyToNotifySocket) {
  testing::TempDir dir;
  std::string path = dir.Join("notify");
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ASSERT_OK(NotifySystemd());
  EXPECT_EQ(getenv("NOTIFY_SOCKET"), nullptr);
  char buf[32] = {};
  EXPECT_EQ(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 7);
  EXPECT_STREQ(buf, "READY=1");
  close(fd);
}

// systemd may name an abstract socket: "@NAME", sent to NUL + NAME.
TEST(NotifySystemdTest, SendsReadyToAnAbstractNotifySocket) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd.valid()) << std::strerror(errno);
  // A name the kernel chooses (autobind), unique in the network namespace;
  // one made from the pid was not, as each test Bazel runs in its sandbox
  // has a pid namespace of its own, and the same pid.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)), 0)
      << std::strerror(errno);
  socklen_t length = sizeof(addr);
  ASSERT_EQ(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0)
      << std::strerror(errno);
  const size_t name_at = offsetof(sockaddr_un, sun_path) + 1;  // after the NUL
  ASSERT_GT(length, name_at);
  const std::string name(addr.sun_path + 1, length - name_at);
  setenv("NOTIFY_SOCKET", absl::StrCat("@", name).c_str(), 1);
  ASSERT_OK(NotifySystemd());
  EXPECT_EQ(getenv("NOTIFY_SOCKET"), nullptr);
  char buf[32] = {};
  EXPECT_EQ(recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT), 7);
  EXPECT_STREQ(buf, "READY=1");
}

// Nothing listens at the path: sendto fails, and says where it sent.
TEST(NotifySystemdTest, ReportsAFailedSend) {
  testing::TempDir dir;
  const std::string path = dir.Join("gone");
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_THAT(NotifySystemd(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(absl::StrCat("sendto(NOTIFY_SOCKET=", path, ")"))));
  EXPECT_EQ(getenv("NOTIFY_SOCKET"), nullptr);
}

TEST(NotifySystemdTest, NothingToDoWithoutVariable) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_OK(NotifySystemd());
}

TEST(NotifySystemdTest, RejectsUnusableValue) {
  setenv("NOTIFY_SOCKET", "relative", 1);
  EXPECT_THAT(NotifySystemd(), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace capbroker::server
