#include "broker/service/start_limiter.h"

#include <algorithm>

namespace capbroker::service {

absl::Duration StartLimiter::TryTake(absl::Duration now) {
  absl::Duration full_at = std::max(full_at_, now) + limit_.interval;
  // The bucket holds `burst` starts: it may be up to that many intervals
  // from full.
  absl::Duration wait = full_at - now - limit_.burst * limit_.interval;
  if (wait > absl::ZeroDuration()) return wait;
  full_at_ = full_at;
  return absl::ZeroDuration();
}

}  // namespace capbroker::service
