#include "broker/service/start_limiter.h"

#include "gtest/gtest.h"

namespace capbroker::service {
namespace {

// Points on MonotonicNow's clock, as the host passes them.
const absl::Duration kT0 = absl::Seconds(1000);
const StartLimit kLimit{3, absl::Milliseconds(100)};

TEST(StartLimiterTest, ABurstThenOneAnInterval) {
  StartLimiter limiter(kLimit);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.TryTake(kT0), absl::ZeroDuration()) << i;
  EXPECT_EQ(limiter.TryTake(kT0), absl::Milliseconds(100));
  // Refused starts take nothing: the wait only shrinks.
  EXPECT_EQ(limiter.TryTake(kT0 + absl::Milliseconds(40)), absl::Milliseconds(60));
  EXPECT_EQ(limiter.TryTake(kT0 + absl::Milliseconds(100)), absl::ZeroDuration());
  EXPECT_EQ(limiter.TryTake(kT0 + absl::Milliseconds(100)), absl::Milliseconds(100));
  EXPECT_EQ(limiter.TryTake(kT0 + absl::Milliseconds(250)), absl::ZeroDuration());
}

TEST(StartLimiterTest, AQuietSpellRefillsTheBurstButNoMore) {
  StartLimiter limiter(kLimit);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(limiter.TryTake(kT0), absl::ZeroDuration());
  const absl::Duration later = kT0 + absl::Hours(1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.TryTake(later), absl::ZeroDuration()) << i;
  EXPECT_EQ(limiter.TryTake(later), absl::Milliseconds(100));
}

// Starts spread out at the limit's pace are never refused.
TEST(StartLimiterTest, StartsAtThePaceAreNeverRefused) {
  StartLimiter limiter(kLimit);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(limiter.TryTake(kT0 + i * absl::Milliseconds(100)), absl::ZeroDuration()) << i;
  }
}

}  // namespace
}  // namespace capbroker::service
