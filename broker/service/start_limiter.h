// StartLimiter: how often one service may be started, as a token bucket.
//
// A start costs the broker's only thread a launch (a clone of the broker,
// pipes, id maps) and the system a new set of namespaces and a minimal root.
// A service that exits when its client leaves (inetd style, which the host
// supports: a clean exit is no failure) is started again by the next
// connect, so one client looping connect and close could keep the broker
// launching. The bucket lets `burst` starts go at once, then one per
// `interval`; a start beyond that waits for its turn.
//
// Kept as the time at which the bucket would be full again (GCRA), so that
// no clock has to tick: exact, in whole durations. Times are points on
// MonotonicNow's clock (sdk/base/syscall.h, CLOCK_MONOTONIC), which no one
// can step: on the wall clock, one set back by an hour would have made
// every start wait that hour, and one set forward refilled the bucket.
#ifndef CAPBROKER_BROKER_SERVICE_START_LIMITER_H_
#define CAPBROKER_BROKER_SERVICE_START_LIMITER_H_

#include "absl/time/time.h"

namespace capbroker::service {

struct StartLimit {
  int burst = 5;                                      // starts at once
  absl::Duration interval = absl::Milliseconds(200);  // then one each: 5 a second
};

class StartLimiter {
 public:
  explicit StartLimiter(StartLimit limit) : limit_(limit) {}

  // Takes a start at `now` (a MonotonicNow) if the bucket holds one:
  // returns zero. Otherwise how long until it will; nothing is taken.
  absl::Duration TryTake(absl::Duration now);

 private:
  StartLimit limit_;
  // When the bucket is full again: every start taken adds one interval.
  absl::Duration full_at_ = -absl::InfiniteDuration();
};

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_START_LIMITER_H_
