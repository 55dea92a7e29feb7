// SIGHUP's part for the audit log (log rotation): go on in a new file at
// the log's path, and bring capctl status up to date with what that did.
#ifndef CAPBROKER_BROKER_DAEMON_AUDIT_REOPEN_H_
#define CAPBROKER_BROKER_DAEMON_AUDIT_REOPEN_H_

#include <string>

#include "broker/audit/audit_log.h"
#include "broker/server/stats.h"

namespace capbroker::daemon {

// Reopens `audit` at `path` (AuditLog::Reopen), or keeps the file open and
// says why on stderr and in `stats` (audit_reopen_error). Nothing when
// `path` is empty: the log is on stderr, which cannot be reopened. The
// lines a reopen writes to the old file first can be lost there (a full
// disk, a rotated file at its size limit), and a deleted file's lines are
// counted: `stats` gets both counts at once, for a status asked right
// after, since status and list write no line and so flush nothing.
void ReopenAuditLog(const std::string& path, audit::AuditLog& audit, server::Stats& stats);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_AUDIT_REOPEN_H_
