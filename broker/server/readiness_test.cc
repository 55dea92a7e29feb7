#include "broker/server/readiness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::server {
namespace {

TEST(NotifyReadyFdTest, WritesLineAndCloses) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  ASSERT_OK(NotifyReadyFd(fds[1], "READY"));
  char buf[16] = {};
  EXPECT_EQ(read(fds[0], buf, sizeof(buf)), 6);
  EXPECT_STREQ(buf, "READY\n");
  EXPECT_EQ(read(fds[0], buf, sizeof(buf)), 0);  // the write end was closed
  close(fds[0]);
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
