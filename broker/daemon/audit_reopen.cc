#include "broker/daemon/audit_reopen.h"

#include <cstdio>

#include "absl/status/status.h"

namespace capbroker::daemon {

void ReopenAuditLog(const std::string& path, audit::AuditLog& audit, server::Stats& stats) {
  if (path.empty()) return;  // stderr: nothing to reopen
  absl::Status reopened = audit.Reopen(path);
  stats.audit_lines_dropped = audit.lines_dropped();
  stats.audit_lines_to_deleted_files = audit.lines_to_deleted_files();
  // Shown by capctl status too: after a rotation, the file open before is
  // the rotated one, which the next rotation may compress away.
  stats.audit_reopen_error = std::string(reopened.message());
  if (!reopened.ok()) {
    std::fprintf(stderr, "capbrokerd: SIGHUP: audit log: going on in the file open before: %s\n",
                 stats.audit_reopen_error.c_str());
  }
}

}  // namespace capbroker::daemon
