// The broker's start under a low fd limit (RaiseFdLimit, which RunDaemon
// calls): the soft limit goes up to the hard one, and a hard limit below
// what one uid can make the broker hold is reported, not silent.
#include "broker/daemon/daemon.h"

#include <sys/resource.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker::daemon {
namespace {

using ::testing::HasSubstr;

// This test's own process: the hard limit it lowers never comes back, and
// no other test runs in it.
TEST(RaiseFdLimitTest, ALimitBelowWhatOneUidCanHoldIsReported) {
  rlimit low{256, 512};  // a container's, or ulimit -n
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  std::string warning = RaiseFdLimit(server::Limits(), 0);  // the defaults need ~8.2k
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, 512u) << "the soft limit was not raised to the hard one";
  EXPECT_THAT(warning, HasSubstr("512 fds"));
  EXPECT_THAT(warning, HasSubstr("--max-connections-per-uid"));
  EXPECT_THAT(warning, HasSubstr("--max-queued-reply-fds"));
  EXPECT_THAT(warning, HasSubstr("LimitNOFILE="));

  // Services count too: 4 fds each (connection, pidfd, output, timer).
  server::Limits small;
  small.max_connections_per_uid = 200;
  small.max_queued_fds_total = 200;
  EXPECT_EQ(RaiseFdLimit(small, 0), "");
  EXPECT_EQ(RaiseFdLimit(small, 12), "");  // 200 + 200 + 64 + 12 x 4 = 512
  EXPECT_THAT(RaiseFdLimit(small, 13), HasSubstr("= 516."));
}

}  // namespace
}  // namespace capbroker::daemon
