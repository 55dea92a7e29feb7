#include "broker/service/restart_delay.h"

#include <algorithm>

namespace capbroker::service {

absl::Duration RestartDelay(absl::Duration first, uint32_t in_a_row) {
  absl::Duration delay = first;
  // Stops doubling at the cap: in_a_row is bounded only by restartLimit.
  for (uint32_t i = 0; i < in_a_row && delay < kMaxRestartDelay; ++i) delay *= 2;
  return std::min(delay, kMaxRestartDelay);
}

}  // namespace capbroker::service
