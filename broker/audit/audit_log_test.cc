#include "broker/audit/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::audit {
namespace {

using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(AuditLogTest, WritesOneJsonLinePerEventOnFlush) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e;
  e.uid = 1000;
  e.gid = 1000;
  e.pid = 42;
  e.exe = "/usr/bin/cat";
  e.request = "acquire";
  e.capability = "motd";
  e.access = "read";
  e.granted = true;
  e.principal = "ops";
  e.reason = "principal 'ops' grants 'motd'";
  log.Record(e, absl::FromUnixSeconds(0));
  EXPECT_EQ(ReadAll(path), "");  // buffered until Flush
  e.granted = false;
  e.reason = "no principal grants \"x\"";
  log.Record(e, absl::FromUnixMillis(1500));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(ReadAll(path),
            R"({"time":"1970-01-01T00:00:00.000Z","event":"grant","peer":{"uid":1000,"gid":1000,"pid":42,"exe":"/usr/bin/cat"},"request":{"kind":"acquire","capability":"motd","access":"read"},"decision":"granted","principal":"ops","reason":"principal 'ops' grants 'motd'"})"
            "\n"
            R"({"time":"1970-01-01T00:00:01.500Z","event":"deny","peer":{"uid":1000,"gid":1000,"pid":42,"exe":"/usr/bin/cat"},"request":{"kind":"acquire","capability":"motd","access":"read"},"decision":"denied","principal":"ops","reason":"no principal grants \"x\""})"
            "\n");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(AuditLogTest, RefusesSymlinkedLogPath) {
  testing::TempDir dir;
  dir.WriteFile("target", "");
  ASSERT_EQ(symlink(dir.Join("target").c_str(), dir.Join("link").c_str()), 0);
  EXPECT_THAT(AuditLog::OpenFile(dir.Join("link")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("link")));
}

TEST(AuditLogTest, CountsDroppedLinesWhenWritingFails) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  close(fds[0]);  // writes now fail with EPIPE (SIGPIPE ignored below)
  signal(SIGPIPE, SIG_IGN);
  AuditLog log(fds[1]);
  AuditEvent e;
  log.Record(e, absl::Now());
  log.Record(e, absl::Now());
  EXPECT_EQ(log.Flush(), 2u);
  EXPECT_FALSE(log.has_pending());
  close(fds[1]);
}

}  // namespace
}  // namespace capbroker::audit
