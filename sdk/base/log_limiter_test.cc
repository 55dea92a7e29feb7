#include "sdk/base/log_limiter.h"

#include "gtest/gtest.h"

namespace capbroker {
namespace {

TEST(LogLimiterTest, AllowsBudgetPerSecondAndCountsTheRest) {
  LogLimiter limiter(2);
  absl::Time t = absl::FromUnixSeconds(100);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(t, suppressed));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_TRUE(limiter.Allow(t + absl::Milliseconds(10), suppressed));
  EXPECT_FALSE(limiter.Allow(t + absl::Milliseconds(20), suppressed));
  EXPECT_FALSE(limiter.Allow(t + absl::Milliseconds(30), suppressed));
  // The next second: allowed again, and told how many were dropped.
  EXPECT_TRUE(limiter.Allow(t + absl::Seconds(1), suppressed));
  EXPECT_EQ(suppressed, 2u);
  EXPECT_TRUE(limiter.Allow(t + absl::Seconds(1), suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(LogLimiterTest, TheCountOfLinesRefusedCanBeTakenWhenNoLineFollows) {
  LogLimiter limiter(1);
  absl::Time t = absl::FromUnixSeconds(100);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(t, suppressed));
  EXPECT_FALSE(limiter.Allow(t, suppressed));
  EXPECT_FALSE(limiter.Allow(t, suppressed));
  EXPECT_EQ(limiter.TakeSuppressed(), 2u);
  EXPECT_EQ(limiter.TakeSuppressed(), 0u);
  // Taken, they are not reported again.
  EXPECT_TRUE(limiter.Allow(t + absl::Seconds(1), suppressed));
  EXPECT_EQ(suppressed, 0u);
}

}  // namespace
}  // namespace capbroker
