#include "broker/service/restart_delay.h"

#include "gtest/gtest.h"

namespace capbroker::service {
namespace {

TEST(RestartDelayTest, DoublesPerRestartInARow) {
  const absl::Duration first = absl::Milliseconds(100);
  EXPECT_EQ(RestartDelay(first, 0), absl::Milliseconds(100));
  EXPECT_EQ(RestartDelay(first, 1), absl::Milliseconds(200));
  EXPECT_EQ(RestartDelay(first, 2), absl::Milliseconds(400));
  EXPECT_EQ(RestartDelay(first, 8), absl::Milliseconds(25600));
}

// README: "doubling per restart in a row, to 30 s".
TEST(RestartDelayTest, IsCappedAt30Seconds) {
  const absl::Duration first = absl::Seconds(20);
  EXPECT_EQ(RestartDelay(first, 0), absl::Seconds(20));
  EXPECT_EQ(RestartDelay(first, 1), absl::Seconds(30));
  EXPECT_EQ(RestartDelay(absl::Milliseconds(100), 9), absl::Seconds(30));
  EXPECT_EQ(RestartDelay(absl::Milliseconds(kMaxRestartDelayMs), 0), absl::Seconds(30));
  // However many restarts in a row a large restartLimit allows.
  EXPECT_EQ(RestartDelay(absl::Milliseconds(1), UINT32_MAX), absl::Seconds(30));
}

}  // namespace
}  // namespace capbroker::service
