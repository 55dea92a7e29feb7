#include "sdk/base/log_limiter.h"

namespace capbroker {

bool LogLimiter::Allow(absl::Time now, uint64_t& suppressed) {
  int64_t second = absl::ToUnixSeconds(now);
  if (second != second_) {
    second_ = second;
    used_ = 0;
  }
  if (used_ >= budget_) {
    ++suppressed_;
    return false;
  }
  ++used_;
  suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

}  // namespace capbroker
