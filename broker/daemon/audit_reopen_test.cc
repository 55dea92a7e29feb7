// ReopenAuditLog: SIGHUP's reopen of the audit log, and what capctl status
// learns from it.
#include "broker/daemon/audit_reopen.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "broker/audit/audit_log.h"
#include "broker/server/stats.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::daemon {
namespace {

uint64_t RecordGrant(audit::AuditLog& log) {
  audit::AuditEvent event;
  event.request = "acquire";
  event.capability = "m";
  event.access = "readWrite";
  event.granted = true;
  return log.Record(event, audit::InstantNow());
}

// A line still buffered at the SIGHUP goes to the old file first; the old
// file, rotated, is at the file size limit (EFBIG, as ENOSPC would do), so
// the line is lost. Status and list write no line, so nothing flushes
// after: the reopen itself must bring the count of lost lines to status.
TEST(ReopenAuditLogTest, ALineLostInTheOldFileShowsInStatusAtOnce) {
  testing::TempDir dir;
  const std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(audit::AuditLog log, audit::AuditLog::OpenFile(path));
  RecordGrant(log);
  ASSERT_EQ(log.Flush(), 0u);
  ASSERT_EQ(std::rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);  // logrotate
  struct stat rotated;
  ASSERT_EQ(stat(dir.Join("audit.log.1").c_str(), &rotated), 0);
  ASSERT_GT(rotated.st_size, 0);
  RecordGrant(log);  // buffered when the SIGHUP comes

  // Writes past the old file's size now fail with EFBIG (SIGXFSZ ignored,
  // as the broker ignores it).
  ASSERT_NE(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit at_size = saved;
  at_size.rlim_cur = static_cast<rlim_t>(rotated.st_size);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &at_size), 0);
  server::Stats stats;
  ReopenAuditLog(path, log, stats);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);

  EXPECT_EQ(log.lines_dropped(), 1u);
  EXPECT_EQ(stats.audit_lines_dropped, 1u) << "status would not show the line lost";
  EXPECT_EQ(stats.audit_reopen_error, "");  // the reopen itself worked
  EXPECT_FALSE(log.has_pending());
}

}  // namespace
}  // namespace capbroker::daemon
