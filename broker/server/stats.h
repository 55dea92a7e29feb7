// Counters the broker keeps for `capctl status`.
#ifndef CAPBROKER_BROKER_SERVER_STATS_H_
#define CAPBROKER_BROKER_SERVER_STATS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace capbroker::server {

struct Stats {
  // When the broker started, on MonotonicNow's clock: a clock set back or
  // forward (NTP, an administrator) does not change the uptime shown.
  absl::Duration started;
  uint32_t connections = 0;       // open now
  uint64_t connections_total = 0;
  uint64_t grants = 0;
  uint64_t denials = 0;
  // Denials by error code name ("permissionDenied", "notFound", ...):
  // ordered, so status output is stable.
  std::map<std::string, uint64_t> denials_by_reason;
  uint64_t audit_lines_dropped = 0;
  // Audit lines that went to the log's file after it was deleted (rm), as
  // far as the log can tell (AuditLog::lines_to_deleted_files).
  uint64_t audit_lines_to_deleted_files = 0;
  // Policies installed (1 after start-up; each successful reload adds one),
  // reloads refused, and the last reload: when, on MonotonicNow's clock as
  // `started` is (unset: none yet), whether it was refused, and why (empty
  // unless it was). On the wall clock, one set back showed the last reload
  // 0 s ago, one set forward a reload hours old.
  uint64_t policy_generation = 0;
  uint64_t policy_reload_failures = 0;
  std::optional<absl::Duration> last_reload;
  bool last_reload_refused = false;
  std::string last_reload_error;
  // Why the last reopen of the audit log (at SIGHUP, or by a flush after
  // the file was deleted, audit_log.h) was refused; empty once one worked.
  std::string audit_reopen_error;
};

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_STATS_H_
