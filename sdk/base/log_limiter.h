// LogLimiter: a cap on how many lines per second a kind of event may log.
//
// Clients can provoke some log lines (a refused connection, a client that
// does not read). Unlimited, a flood of such events would flood the log and
// bury what matters; so each kind of line has a budget per second, and the
// first line allowed after a suppression says how many were dropped.
#ifndef CAPBROKER_SDK_BASE_LOG_LIMITER_H_
#define CAPBROKER_SDK_BASE_LOG_LIMITER_H_

#include <cstdint>
#include <utility>

#include "absl/time/time.h"

namespace capbroker {

class LogLimiter {
 public:
  explicit LogLimiter(int lines_per_second) : budget_(lines_per_second) {}

  // Whether a line may be logged at `now`. When it may, `suppressed` is set
  // to the number of lines refused since the last one allowed.
  bool Allow(absl::Time now, uint64_t& suppressed);

  // The number of lines refused since the last one allowed, which the next
  // Allow would report; forgets them. For a stream of lines that ends
  // (a service's output closing): no later line will carry the count.
  uint64_t TakeSuppressed() { return std::exchange(suppressed_, 0); }

 private:
  int budget_;
  int64_t second_ = -1;
  int used_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_BASE_LOG_LIMITER_H_
