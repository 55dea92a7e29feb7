// RestartDelay: how long the host waits before restarting a service that
// failed, by how many restarts in a row came before.
//
// A service that fails at once would otherwise keep the broker's only
// thread launching sandboxes: the first delay is the policy's
// restartDelayMs, and each restart in a row doubles it, up to
// kMaxRestartDelay (30 s, also the longest restartDelayMs the policy takes).
// A pure function, so that the doubling and the cap are tested without
// waiting for either.
#ifndef CAPBROKER_BROKER_SERVICE_RESTART_DELAY_H_
#define CAPBROKER_BROKER_SERVICE_RESTART_DELAY_H_

#include <cstdint>

#include "absl/time/time.h"
#include "broker/policy/policy.h"

namespace capbroker::service {

inline constexpr absl::Duration kMaxRestartDelay = absl::Milliseconds(kMaxRestartDelayMs);

// The delay before the restart that follows `in_a_row` restarts in a row:
// `first` doubled `in_a_row` times, at most kMaxRestartDelay. For example,
// with a first of 20 s: 20 s, then 30 s from then on.
absl::Duration RestartDelay(absl::Duration first, uint32_t in_a_row);

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_RESTART_DELAY_H_
