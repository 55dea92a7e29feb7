// RateLimitedLog: lines to stderr, at most so many per second.
//
// A service logs what clients cause (a refused connection, a worker that
// crashed on a client's file); a client must not be able to flood the
// service's log with them. Lines beyond the budget of the current second
// are dropped and counted, and the first line of a later second is preceded
// by "N log lines suppressed".
//
// Not thread-safe.
#ifndef CAPBROKER_SDK_SERVICE_RATE_LIMITED_LOG_H_
#define CAPBROKER_SDK_SERVICE_RATE_LIMITED_LOG_H_

#include "absl/strings/string_view.h"
#include "sdk/base/log_limiter.h"

namespace capbroker {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(int lines_per_second) : limiter_(lines_per_second) {}

  // Writes `line` and a newline to stderr, unless this second's budget is
  // spent.
  void Line(absl::string_view line);

 private:
  LogLimiter limiter_;
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_RATE_LIMITED_LOG_H_
