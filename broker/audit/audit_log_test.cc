#include "broker/audit/audit_log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/foreign_link.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::audit {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

using ::capbroker::testing::ReadWholeFile;

// `wall` on both clocks, as when nobody steps the wall clock: the monotonic
// reading runs with it (from the Unix epoch, as good a start as any).
Instant At(absl::Time wall) { return {wall, wall - absl::UnixEpoch()}; }

TEST(AuditLogTest, WritesOneJsonLinePerEventOnFlush) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e;
  e.uid = 1000;
  std::string peer = RenderPeer(1000, 1000, 42, "/usr/bin/cat");
  e.peer = peer;
  e.request = "acquire";
  e.capability = "motd";
  e.access = "read";
  e.granted = true;
  e.principal = "ops";
  e.reason = "principal 'ops' grants 'motd'";
  log.Record(e, At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(ReadWholeFile(path), "");  // buffered until Flush
  e.granted = false;
  e.reason = "no principal grants \"x\"";
  log.Record(e, At(absl::FromUnixMillis(1500)));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(ReadWholeFile(path),
            R"({"time":"1970-01-01T00:00:00.000Z","event":"grant","peer":{"uid":1000,"gid":1000,"pid":42,"exe":"/usr/bin/cat"},"request":{"kind":"acquire","capability":"motd","access":"read"},"decision":"granted","principal":"ops","reason":"principal 'ops' grants 'motd'"})"
            "\n"
            R"({"time":"1970-01-01T00:00:01.500Z","event":"deny","peer":{"uid":1000,"gid":1000,"pid":42,"exe":"/usr/bin/cat"},"request":{"kind":"acquire","capability":"motd","access":"read"},"decision":"denied","principal":"ops","reason":"no principal grants \"x\""})"
            "\n");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// An open beneath's create (with its mode) and truncate go into the
// request, and whether a granted create made the file after the decision;
// each only when asked, so that a plain open's line stays as it was.
TEST(AuditLogTest, WritesCreateModeTruncateAndCreatedOnlyWhenAsked) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e;
  e.uid = 1000;
  e.peer = R"({"uid":1000})";
  e.request = "openBeneath";
  e.capability = "spool";
  e.access = "write";
  e.path = "job";
  e.granted = true;
  e.principal = "ops";
  e.reason = "r";
  log.Record(e, At(absl::FromUnixSeconds(0)));
  e.open.create = true;
  e.open.mode = 0644;
  e.open.created = true;
  log.Record(e, At(absl::FromUnixSeconds(0)));
  e.open.mode = 0;
  e.open.truncate = true;
  e.open.created = false;
  log.Record(e, At(absl::FromUnixSeconds(0)));
  e.open.create = false;
  e.granted = false;
  log.Record(e, At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  const std::string start =
      R"({"time":"1970-01-01T00:00:00.000Z","event":"grant","peer":{"uid":1000},)"
      R"("request":{"kind":"openBeneath","capability":"spool","access":"write","path":"job")";
  const std::string end = R"("principal":"ops","reason":"r"})" "\n";
  EXPECT_EQ(ReadWholeFile(path),
            start + R"(},"decision":"granted",)" + end +
            start + R"(,"create":true,"mode":"0644"},"decision":"granted","created":true,)" +
            end +
            start + R"(,"create":true,"mode":"0000","truncate":true},"decision":"granted",)"
                    R"("created":false,)" + end +
            R"({"time":"1970-01-01T00:00:00.000Z","event":"deny","peer":{"uid":1000},)"
            R"("request":{"kind":"openBeneath","capability":"spool","access":"write",)"
            R"("path":"job","truncate":true},"decision":"denied",)" + end);
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
  log.Record(e, InstantNow());
  log.Record(e, InstantNow());
  EXPECT_EQ(log.Flush(), 2u);
  EXPECT_FALSE(log.has_pending());
  close(fds[1]);
}

// A log given as an fd (stderr) whose reader is gone (EPIPE) can never be
// written again: reader_gone() says so, and the broker stops. A full disk
// (ENOSPC) may clear: it does not.
TEST(AuditLogTest, SaysWhenItsReaderIsGoneForGood) {
  signal(SIGPIPE, SIG_IGN);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd reader(fds[0]), writer(fds[1]);
  AuditLog piped(writer.get());
  UniqueFd full(open("/dev/full", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(full.valid());
  AuditLog disk_full(full.get());
  AuditEvent e;
  for (AuditLog* log : {&piped, &disk_full}) {
    log->Record(e, InstantNow());
    log->Flush();
    EXPECT_FALSE(log->reader_gone());
  }
  EXPECT_EQ(disk_full.Flush(), 1u);  // lost, but the disk may have room later
  reader.reset();
  piped.Record(e, InstantNow());
  EXPECT_EQ(piped.Flush(), 1u);
  EXPECT_TRUE(piped.reader_gone());
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text.substr(start, nl - start));
  }
  if (start < text.size()) lines.push_back(text.substr(start) + "<no newline>");
  return lines;
}

bool IsWholeLine(const std::string& line) {
  return absl::StartsWith(line, "{\"time\":") && absl::EndsWith(line, "}");
}

// A write that fails after part of a line went out (a full disk: a short
// write, then ENOSPC; here the file size limit: a short write, then EFBIG)
// leaves a fragment in the file. The next line must not run into it.
TEST(AuditLogTest, APartlyWrittenLineNeverRunsIntoTheNext) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e;
  e.request = "acquire";
  e.capability = "motd";
  signal(SIGXFSZ, SIG_IGN);
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 100;  // within the first line
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  log.Record(e, At(absl::FromUnixSeconds(0)));
  log.Record(e, At(absl::FromUnixSeconds(0)));
  uint64_t dropped = log.Flush();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_EQ(dropped, 2u);
  ASSERT_EQ(ReadWholeFile(path).size(), 100u);  // a fragment of the first line
  std::vector<AuditLog::LineRange> lost = log.TakeLostLines();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].first, 1u);
  EXPECT_EQ(lost[0].last, 2u);
  EXPECT_TRUE(log.TakeLostLines().empty());  // reported once

  log.Record(e, At(absl::FromUnixSeconds(1)));
  EXPECT_EQ(log.Flush(), 2u);
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 2u) << ReadWholeFile(path);
  EXPECT_EQ(lines[0].size(), 100u);  // the fragment, ended
  EXPECT_TRUE(IsWholeLine(lines[1])) << lines[1];
}

// As reported: a write that fails after every byte of a grant line but its
// newline (a full disk at a block boundary; here the file size limit) left
// the whole line in the file. It was counted lost, so its grant was
// withheld, and the next flush ended it with a newline: a valid grant line
// for a grant never delivered. A line whose content went out whole is
// written: its grant may go, and the newline it lacks comes first in the
// next flush, at a rotation in the old file, or at the next open of the file
// (a broker that died meanwhile).
TEST(AuditLogTest, ALineCutOnlyOfItsNewlineCountsAsWritten) {
  testing::TempDir dir;
  AuditEvent e;
  e.request = "acquire";
  e.capability = "motd";
  e.granted = true;
  const Instant t0 = At(absl::FromUnixSeconds(0));
  // The first line, measured in a log of its own.
  std::string line;
  {
    ASSERT_OK_AND_ASSIGN(AuditLog measure, AuditLog::OpenFile(dir.Join("measure.log")));
    measure.Record(e, t0);
    ASSERT_EQ(measure.Flush(), 0u);
    line = ReadWholeFile(dir.Join("measure.log"));
    ASSERT_EQ(Lines(line).size(), 1u);
  }
  for (const bool restart : {false, true}) {
    SCOPED_TRACE(restart ? "the next broker opens the file" : "the same log goes on");
    std::string path = dir.Join(restart ? "restart.log" : "audit.log");
    ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
    signal(SIGXFSZ, SIG_IGN);
    rlimit old;
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
    rlimit small = old;
    small.rlim_cur = line.size() - 1;  // all of the first line but its newline
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    EXPECT_EQ(log.Record(e, t0), 1u);
    EXPECT_EQ(log.Record(e, t0), 2u);
    uint64_t dropped = log.Flush();
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    EXPECT_EQ(dropped, 1u);
    std::vector<AuditLog::LineRange> lost = log.TakeLostLines();
    ASSERT_EQ(lost.size(), 1u);
    EXPECT_EQ(lost[0].first, 2u) << "the line on record counted lost, its grant withheld";
    EXPECT_EQ(lost[0].last, 2u);
    ASSERT_EQ(ReadWholeFile(path), line.substr(0, line.size() - 1));

    if (restart) {
      ASSERT_OK_AND_ASSIGN(AuditLog next, AuditLog::OpenFile(path));
      next.Record(e, t0);
      EXPECT_EQ(next.Flush(), 0u);
    } else {
      log.Record(e, t0);
      EXPECT_EQ(log.Flush(), 1u);
    }
    EXPECT_EQ(ReadWholeFile(path), line + line);
  }
}

// The same cut, then a rotation before any other line: the old file gets
// the newline its last line lacks.
TEST(AuditLogTest, ReopenEndsALineCutOnlyOfItsNewline) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e;
  e.granted = true;
  log.Record(e, At(absl::FromUnixSeconds(0)));
  ASSERT_EQ(log.Flush(), 0u);
  const std::string line = ReadWholeFile(path);
  signal(SIGXFSZ, SIG_IGN);
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 2 * line.size() - 1;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  log.Record(e, At(absl::FromUnixSeconds(0)));
  uint64_t dropped = log.Flush();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_EQ(dropped, 0u);
  EXPECT_TRUE(log.TakeLostLines().empty());
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  ASSERT_OK(log.Reopen(path));
  EXPECT_EQ(ReadWholeFile(dir.Join("audit.log.1")), line + line);
  log.Record(e, At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(ReadWholeFile(path), line);
}

// What this process writes to stderr while it lives: fd 2 goes to a file,
// and back at the end.
class CapturedStderr {
 public:
  explicit CapturedStderr(std::string path) : path_(std::move(path)) {
    std::fflush(stderr);
    saved_ = dup(2);
    int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_GE(saved_, 0);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(dup2(fd, 2), 2);
    close(fd);
  }
  ~CapturedStderr() { Release(); }
  // Puts stderr back; what was written to it meanwhile.
  std::string Release() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      dup2(saved_, 2);
      close(saved_);
      saved_ = -1;
    }
    return ReadWholeFile(path_);
  }

 private:
  std::string path_;
  int saved_ = -1;
};

// As reported: a failing flush wrote a stderr line each time, and a client
// can make one flush per request while the disk is full. The lines are
// rationed as other lines a client can provoke (LogLimiter); the next line
// allowed says how many failed writes went unreported, and each line (and
// the last flush, FlushAll) gives the count of lines lost in all.
TEST(AuditLogTest, FailedWritesAreReportedOnStderrWithinARation) {
  testing::TempDir dir;
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  close(fds[0]);  // writes fail with EPIPE
  signal(SIGPIPE, SIG_IGN);
  UniqueFd write_end(fds[1]);
  AuditLog log(write_end.get());
  AuditEvent e;
  e.granted = true;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  CapturedStderr captured(dir.Join("stderr"));
  for (int i = 0; i < 100; ++i) {
    log.Record(e, At(t0));
    log.Flush(At(t0 + absl::Milliseconds(i)));
  }
  log.Record(e, At(t0));
  log.Flush(At(t0 + absl::Seconds(1)));
  for (int i = 0; i < 10; ++i) {
    log.Record(e, At(t0));
    log.Flush(At(t0 + absl::Seconds(1)));
  }
  EXPECT_EQ(log.FlushAll(), 111u);
  std::vector<std::string> lines = Lines(captured.Release());
  ASSERT_EQ(lines.size(), 3u) << absl::StrJoin(lines, "\n");
  EXPECT_EQ(lines[0],
            "capbrokerd: audit log write failed (Broken pipe): 1 line lost, 1 in all");
  EXPECT_EQ(lines[1],
            "capbrokerd: audit log write failed (Broken pipe): 1 line lost, 101 in all "
            "(99 more failed writes since the last such line)");
  EXPECT_EQ(lines[2],
            "capbrokerd: audit log: 10 more failed writes since the last line about one; "
            "111 lines lost in all");
}

// Log rotation: the file is renamed away and the broker told to reopen.
// Buffered lines finish the old file; later ones start the new file.
TEST(AuditLogTest, ReopenGoesOnInANewFileAtThePath) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e;
  e.capability = "first";
  log.Record(e, At(absl::FromUnixSeconds(0)));
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  ASSERT_OK(log.Reopen(path));
  e.capability = "second";
  log.Record(e, At(absl::FromUnixSeconds(1)));
  EXPECT_EQ(log.Flush(), 0u);
  std::vector<std::string> old_lines = Lines(ReadWholeFile(dir.Join("audit.log.1")));
  std::vector<std::string> new_lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(old_lines.size(), 1u);
  EXPECT_THAT(old_lines[0], HasSubstr(R"("capability":"first")"));
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_THAT(new_lines[0], HasSubstr(R"("capability":"second")"));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// The fd this process has open on the file at `path`, as /proc/self/fd
// names it; -1 if none.
int FdOpenOn(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  if (real == nullptr) return -1;
  for (const auto& [fd, target] : testing::OpenFdTargets()) {
    if (target == real.get()) return fd;
  }
  return -1;
}

// A service, or any program the broker execs, must never inherit the audit
// log: it could write lines of its own into it. Both opens, at start and at
// a SIGHUP's reopen, are close-on-exec.
TEST(AuditLogTest, OpensTheLogCloseOnExec) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  int opened = FdOpenOn(path);
  ASSERT_GE(opened, 0);
  EXPECT_TRUE(testing::IsCloseOnExec(opened)) << "at start";
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  ASSERT_OK(log.Reopen(path));
  int reopened = FdOpenOn(path);
  ASSERT_GE(reopened, 0);
  EXPECT_TRUE(testing::IsCloseOnExec(reopened)) << "reopened";
}

// A symlink planted at the path while the log was rotated is refused, and
// the log goes on in the file it had.
TEST(AuditLogTest, ReopenRefusesASymlinkAndKeepsTheOldFile) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  dir.WriteFile("elsewhere", "");
  ASSERT_EQ(symlink(dir.Join("elsewhere").c_str(), path.c_str()), 0);
  EXPECT_THAT(log.Reopen(path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("symlink")));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(Lines(ReadWholeFile(dir.Join("audit.log.1"))).size(), 1u);
  EXPECT_EQ(ReadWholeFile(dir.Join("elsewhere")), "");
}

// How long an open of the log may take before a test calls it stuck: far
// more than it ever needs, so that only a blocked open reaches it.
constexpr auto kOpenDeadline = std::chrono::seconds(10);

struct TimedOpen {
  absl::Status status;
  bool in_time = false;  // returned before kOpenDeadline
};

// Runs `open` (an open of the log at `fifo`) on a thread. An open for
// writing of a FIFO without a reader waits for one, for ever: past the
// deadline the test opens `fifo` for reading itself, which lets such an
// open return, so that the test fails rather than hangs.
TimedOpen OpenReleasingAFifo(const std::string& fifo, std::function<absl::Status()> open) {
  std::future<absl::Status> result = std::async(std::launch::async, std::move(open));
  TimedOpen timed;
  timed.in_time = result.wait_for(kOpenDeadline) == std::future_status::ready;
  UniqueFd reader;  // kept until the open has returned
  if (!timed.in_time) reader.reset(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  timed.status = result.get();
  return timed;
}

// As reported: at log rotation another user puts a FIFO at the log's path.
// Opening it for writing would wait for a reader, the whole broker with it;
// it is refused at once.
TEST(AuditLogTest, RefusesAFifoWithoutWaitingForAReader) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  TimedOpen opened =
      OpenReleasingAFifo(path, [&] { return AuditLog::OpenFile(path).status(); });
  EXPECT_TRUE(opened.in_time) << "the open waited for a reader of the FIFO";
  EXPECT_THAT(opened.status,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", path, " is a FIFO, not a regular file")));
}

// The same FIFO with its owner reading it: the broker would write its audit
// lines into their pipe, which they can stop reading at any time.
TEST(AuditLogTest, RefusesAFifoSomeoneReads) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  UniqueFd reader(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_GE(reader.get(), 0) << errno;
  EXPECT_THAT(AuditLog::OpenFile(path),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a FIFO")));
}

// As reported: another user creates the log before the broker starts, and
// would read and truncate every line the broker appends.
TEST(AuditLogTest, RefusesALogAnotherUserOwns) {
  testing::TempDir dir;
  std::string path = dir.WriteFile("audit.log", "", 0600);
  if (chown(path.c_str(), testing::kForeignUid, testing::kForeignUid) != 0) {
    GTEST_SKIP() << "cannot give the file away here: " << errno;
  }
  EXPECT_THAT(AuditLog::OpenFile(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", path, " is owned by uid 65534, not by root "
                                    "or the broker (uid ", geteuid(), "); chown root ",
                                    path)));
  EXPECT_EQ(ReadWholeFile(path), "");
}

TEST(AuditLogTest, RefusesALogOthersCanWrite) {
  testing::TempDir dir;
  for (mode_t mode : {0666, 0620, 0602}) {
    std::string path = dir.WriteFile("audit.log", "");
    ASSERT_EQ(chmod(path.c_str(), mode), 0);  // exact, whatever the umask
    EXPECT_THAT(AuditLog::OpenFile(path),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         absl::StrFormat("audit log %s is writable by other users (mode "
                                         "0%o); chmod go-w %s",
                                         path, mode, path)));
  }
}

// The log records every user's uid, pid, executable and the names and paths
// they asked for: only root and the broker may read it back (a log group may
// too). A file others may read is refused, with the fix.
TEST(AuditLogTest, RefusesALogOthersCanRead) {
  testing::TempDir dir;
  for (mode_t mode : {0644, 0604, 0444}) {
    std::string path = dir.WriteFile("audit.log", "");
    ASSERT_EQ(chmod(path.c_str(), mode), 0);  // exact, whatever the umask
    EXPECT_THAT(AuditLog::OpenFile(path),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         absl::StrFormat("audit log %s is readable by other users (mode 0%o), "
                                         "and it records every user's requests; chmod o-r %s",
                                         path, mode, path)));
  }
  // Readable by its group (a log group) is fine.
  std::string path = dir.WriteFile("audit.log", "");
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  EXPECT_OK(AuditLog::OpenFile(path));
}

// The same at a reopen (SIGHUP, after rotation): refused, and the log goes
// on in the file it had.
TEST(AuditLogTest, ReopenRefusesALogOthersCanReadAndKeepsTheOldFile) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  dir.WriteFile("audit.log", "");
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  EXPECT_THAT(log.Reopen(path), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("chmod o-r " + path)));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(Lines(ReadWholeFile(dir.Join("audit.log.1"))).size(), 1u);
  EXPECT_EQ(ReadWholeFile(path), "");
}

// A log the broker creates is 0600 whatever the umask, so never readable by
// others.
TEST(AuditLogTest, CreatesTheLogUnreadableByOthersWhateverTheUmask) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  mode_t old = umask(0);
  absl::StatusOr<AuditLog> log = AuditLog::OpenFile(path);
  umask(old);
  ASSERT_OK(log.status());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// --audit-log naming the policy file (or the socket's lock file): audit
// lines would be appended to it, and the next reload or restart would fail
// on a policy that no longer parses. Refused, naming the file.
TEST(AuditLogTest, RefusesAFileReservedForSomethingElse) {
  testing::TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", "( )\n", 0600);
  std::vector<ReservedFile> reserved = {{"the policy file", policy},
                                        {"the socket's lock file", dir.Join("s.lock")}};
  EXPECT_THAT(AuditLog::OpenFile(policy, {}, reserved),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", policy, " is the policy file (", policy,
                                    "): audit lines would be appended to it; give the audit "
                                    "log a file of its own")));
  EXPECT_EQ(ReadWholeFile(policy), "( )\n");
  // Not there yet: refused before anything is created at its path (a file
  // left at the socket's would make every later bind fail), by any name of
  // the same place.
  EXPECT_THAT(AuditLog::OpenFile(dir.Join("s.lock"), {}, reserved),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is the socket's lock file")));
  EXPECT_THAT(AuditLog::OpenFile(dir.Join("./s.lock"), {}, reserved),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is the socket's lock file")));
  EXPECT_NE(access(dir.Join("s.lock").c_str(), F_OK), 0) << "created by the refused open";
  // Another file is fine.
  EXPECT_OK(AuditLog::OpenFile(dir.Join("audit.log"), {}, reserved));
}

// The configured paths may hold a newline or an escape sequence (a
// directory named so): every refusal quotes them escaped, so that the
// error stays one line and nothing reaches the terminal. The reserved
// socket's path, quoted by the refusal before the open, included.
TEST(AuditLogTest, QuotesPathsEscaped) {
  testing::TempDir dir;
  const std::string sub = dir.Join("a\nFAKE\x1b[2J");
  ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
  const std::string shown = dir.Join("a\\x0aFAKE\\x1b[2J");
  const std::string socket = sub + "/s";
  EXPECT_THAT(AuditLog::OpenFile(socket, {}, {{"the socket", socket}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", shown, "/s is the socket (", shown,
                                    "/s): audit lines would be appended to it; give the audit "
                                    "log a file of its own")));
  // The refusal after the open (the reserved file there, by another name).
  const std::string policy = sub + "/policy.capnp";
  ASSERT_EQ(close(open(policy.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
  ASSERT_EQ(symlink(policy.c_str(), dir.Join("p").c_str()), 0);
  EXPECT_THAT(AuditLog::OpenFile(policy, {}, {{"the policy file", dir.Join("p")}}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", shown, "/policy.capnp is the policy file (",
                                    dir.Join("p"),
                                    "): audit lines would be appended to it; give the audit "
                                    "log a file of its own")));
  ASSERT_EQ(symlink(policy.c_str(), (sub + "/link").c_str()), 0);
  EXPECT_THAT(AuditLog::OpenFile(sub + "/link"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", shown,
                                    "/link is a symlink; give the real path")));
  ASSERT_EQ(link(policy.c_str(), (sub + "/second").c_str()), 0);
  EXPECT_THAT(AuditLog::OpenFile(policy),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("audit log ", shown, "/policy.capnp has 2 hard "
                                              "links"))));
}

// The same at a reopen: the policy linked at the log's path after rotation
// is refused, and the log goes on in the file it had.
TEST(AuditLogTest, ReopenRefusesAReservedFileAndKeepsTheOldFile) {
  testing::TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", "( )\n", 0600);
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log,
                       AuditLog::OpenFile(path, {}, {{"the policy file", policy}}));
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  ASSERT_EQ(link(policy.c_str(), path.c_str()), 0);
  EXPECT_THAT(log.Reopen(path), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("is the policy file (" + policy + ")")));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(Lines(ReadWholeFile(dir.Join("audit.log.1"))).size(), 1u);
  EXPECT_EQ(ReadWholeFile(policy), "( )\n");
}

// In a sticky directory anyone may write to, anyone could link a file of
// root's at the log's path (where fs.protected_hardlinks is 0): the audit
// trail would go into that file. A log must have one link.
TEST(AuditLogTest, RefusesALogWithAnotherName) {
  testing::TempDir dir;
  std::string logs = dir.Join("logs");
  ASSERT_EQ(mkdir(logs.c_str(), 0700), 0);
  ASSERT_EQ(chmod(logs.c_str(), 01777), 0);
  std::string victim = dir.WriteFile("victim", "root's own\n");
  ASSERT_EQ(chmod(victim.c_str(), 0644), 0);
  std::string path = logs + "/audit.log";
  ASSERT_EQ(link(victim.c_str(), path.c_str()), 0);
  EXPECT_THAT(AuditLog::OpenFile(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("audit log ", path, " has 2 hard links: another name may "
                                    "be a file someone else linked here; give the log a file "
                                    "of its own (one link)")));
  // With the link gone, the path is the log's alone.
  ASSERT_EQ(unlink(path.c_str()), 0);
  EXPECT_OK(AuditLog::OpenFile(path));
}

// A directory on the way that others can write, and is not sticky: they
// could rename the log away and put their own in its place.
TEST(AuditLogTest, RefusesADirectoryOthersCanWrite) {
  testing::TempDir dir;
  std::string logs = dir.Join("logs");
  ASSERT_EQ(mkdir(logs.c_str(), 0700), 0);
  ASSERT_EQ(chmod(logs.c_str(), 0777), 0);
  std::string path = logs + "/audit.log";
  EXPECT_THAT(AuditLog::OpenFile(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("directory ", logs, ", on the path to the "
                                              "audit log ", path, ", is writable by other "
                                              "users (mode 0777"))));
  EXPECT_NE(access(path.c_str(), F_OK), 0) << "created in a directory it refused";
  // Sticky, as /tmp is: others cannot rename the broker's file.
  ASSERT_EQ(chmod(logs.c_str(), 01777), 0);
  EXPECT_OK(AuditLog::OpenFile(path));
}

// A log that passes the checks is appended to, whatever it holds.
TEST(AuditLogTest, AppendsToAnExistingLog) {
  testing::TempDir dir;
  std::string path = dir.WriteFile("audit.log", "{\"earlier\":1}\n", 0600);
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);  // readable by a log group is fine
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 2u) << ReadWholeFile(path);
  EXPECT_EQ(lines[0], "{\"earlier\":1}");
  EXPECT_TRUE(IsWholeLine(lines[1])) << lines[1];
}

// As reported: rotation, then a FIFO at the path, then SIGHUP. The reopen
// is refused at once and the log goes on in the file it had.
TEST(AuditLogTest, ReopenRefusesAFifoAndKeepsTheOldFile) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  ASSERT_EQ(rename(path.c_str(), dir.Join("audit.log.1").c_str()), 0);
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  TimedOpen reopened = OpenReleasingAFifo(path, [&] { return log.Reopen(path); });
  EXPECT_TRUE(reopened.in_time) << "the reopen waited for a reader of the FIFO";
  EXPECT_THAT(reopened.status,
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a FIFO")));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  EXPECT_EQ(log.Flush(), 0u);
  EXPECT_EQ(Lines(ReadWholeFile(dir.Join("audit.log.1"))).size(), 1u);
}

// The same for a fragment left by an earlier broker that died mid-write.
TEST(AuditLogTest, EndsAFragmentLeftInTheFile) {
  testing::TempDir dir;
  std::string path = dir.WriteFile("audit.log", "{\"time\":\"cut", 0600);
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  log.Flush();
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 2u) << ReadWholeFile(path);
  EXPECT_EQ(lines[0], "{\"time\":\"cut");
  EXPECT_TRUE(IsWholeLine(lines[1])) << lines[1];
}

// Lines written before a failure are not counted as lost.
TEST(AuditLogTest, CountsOnlyTheLinesNotWritten) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  log.Flush();
  size_t line = ReadWholeFile(path).size();
  signal(SIGXFSZ, SIG_IGN);
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 2 * line + 10;  // room for one more line and a bit
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  for (int i = 0; i < 3; ++i) log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  uint64_t dropped = log.Flush();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_EQ(dropped, 2u);
  std::vector<AuditLog::LineRange> lost = log.TakeLostLines();
  ASSERT_EQ(lost.size(), 1u);  // line 2 was written; 3 and 4 were not
  EXPECT_EQ(lost[0].first, 3u);
  EXPECT_EQ(lost[0].last, 4u);
}

// Lines lost by the flush Record makes when its buffer is full are reported
// too, so that the loop can withhold their grants.
TEST(AuditLogTest, ReportsLinesLostByAFlushInsideRecord) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  close(fds[0]);
  signal(SIGPIPE, SIG_IGN);
  AuditLog log(fds[1]);
  AuditEvent e;
  e.granted = true;  // not throttled
  std::string long_path(4000, 'p');
  e.path = long_path;
  uint64_t last = 0;
  std::vector<AuditLog::LineRange> in_record;
  while (in_record.empty() && last < 1000) {
    last = log.Record(e, InstantNow());
    in_record = log.TakeLostLines();
  }
  ASSERT_EQ(in_record.size(), 1u);
  EXPECT_EQ(in_record[0].first, 1u);
  EXPECT_EQ(in_record[0].last, last);
  EXPECT_GT(last, 1u);
  EXPECT_FALSE(log.has_pending()) << "the full buffer was flushed";
  uint64_t next = log.Record(e, InstantNow());
  EXPECT_EQ(next, last + 1);
  log.Flush();
  std::vector<AuditLog::LineRange> lost = log.TakeLostLines();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].first, next);
  EXPECT_EQ(lost[0].last, next);
  close(fds[1]);
}

// The number of the system call thread `tid` of this process is blocked in,
// or -1 when it is running or gone.
long BlockedInSyscall(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  long nr = -1;
  return (in >> nr) ? nr : -1;
}

// Whoever started the broker may have left its stderr non-blocking (the
// flag belongs to the shared open file description). A full pipe then says
// EAGAIN; the log waits for room instead of losing lines.
TEST(AuditLogTest, WaitsOutANonBlockingPipe) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  ASSERT_GT(fcntl(write_end.get(), F_SETPIPE_SZ, 4096), 0);
  std::string junk(4096, 'j');
  while (write(write_end.get(), junk.data(), junk.size()) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);  // full
  AuditLog log(write_end.get());
  log.Record(AuditEvent(), At(absl::FromUnixSeconds(0)));
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  uint64_t dropped = 99;
  std::thread flusher([&] {
    tid = gettid();
    dropped = log.Flush();
    done = true;
  });
  // Wait (on the kernel's word, not on time) until the flush is blocked in
  // poll(2) for room, or is over.
  while (!done && (tid == 0 || BlockedInSyscall(tid) != SYS_poll)) sched_yield();
  ASSERT_EQ(fcntl(read_end.get(), F_SETFL, 0), 0);  // blocking reads
  std::string got;
  char buf[4096];
  while (got.size() < junk.size() || got.back() != '\n') {
    ssize_t n = read(read_end.get(), buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    if (done && got.size() >= junk.size() && dropped != 0) break;
  }
  flusher.join();
  EXPECT_EQ(dropped, 0u) << "a full non-blocking pipe lost the line";
  EXPECT_TRUE(IsWholeLine(got.substr(junk.size(), got.size() - junk.size() - 1)))
      << got.substr(junk.size());
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

AuditEvent Denial(uint32_t uid) {
  // An event only refers to its peer's text: one per uid, kept for good.
  static auto* peers = new std::map<uint32_t, std::string>;
  std::string& peer = (*peers)[uid];
  if (peer.empty()) peer = RenderPeer(uid, uid, 1, "/usr/bin/false");
  AuditEvent e;
  e.uid = uid;
  e.peer = peer;
  e.request = "acquire";
  e.capability = "secret";
  e.granted = false;
  e.reason = "no";
  return e;
}

// A client cannot fill the disk with denials: each uid has a budget of
// lines (a burst, then so many a second); past it, denials are counted and
// one line later says how many were not logged.
TEST(AuditLogTest, ThrottlesDenialsPerUid) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/3, /*per_second=*/1}));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 10; ++i) log.Record(Denial(1000), At(t0));
  for (int i = 0; i < 2; ++i) log.Record(Denial(2000), At(t0));  // another uid's own budget
  AuditEvent grant = Denial(1000);
  grant.granted = true;
  EXPECT_GT(log.Record(grant, At(t0)), 0u);  // grants are never throttled
  log.Flush(At(t0));
  std::string text = ReadWholeFile(path);
  EXPECT_EQ(Count(text, R"("event":"deny","peer":{"uid":1000,)"), 3);
  EXPECT_EQ(Count(text, R"("event":"deny","peer":{"uid":2000,)"), 2);
  EXPECT_EQ(Count(text, R"("event":"grant")"), 1);
  EXPECT_EQ(Count(text, "denialsSuppressed"), 0);  // no room for it yet

  // A second later uid 1000 has room for one line: the count goes first.
  EXPECT_GT(log.Record(Denial(1000), At(t0 + absl::Seconds(1))), 0u);
  log.Flush(At(t0 + absl::Seconds(1)));
  text = ReadWholeFile(path);
  std::vector<std::string> lines = Lines(text);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_THAT(lines[lines.size() - 2],
              HasSubstr(R"("event":"denialsSuppressed","peer":{"uid":1000},"count":7)"));
  EXPECT_TRUE(IsWholeLine(lines[lines.size() - 2]));
  EXPECT_THAT(lines.back(), HasSubstr(R"("event":"deny","peer":{"uid":1000,)"));
  EXPECT_EQ(log.denials_suppressed(), 7u);
}

// A denial that corrects or completes a line on record (a grant not
// delivered after all) is written whatever its uid's budget, and spends
// none of it: a client that spent its budget on purpose cannot hide it.
TEST(AuditLogTest, ADenialExemptFromTheBudgetIsAlwaysWritten) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/1, /*per_second=*/0}));
  const Instant t0 = At(absl::FromUnixSeconds(1000));
  EXPECT_EQ(log.Record(Denial(7), t0), 1u);
  EXPECT_EQ(log.Record(Denial(7), t0), 0u);  // over the budget
  AuditEvent exempt = Denial(7);
  exempt.reason = "not delivered: the client hung up";
  exempt.exempt_from_budget = true;
  EXPECT_EQ(log.Record(exempt, t0), 2u);
  EXPECT_EQ(log.Record(exempt, t0), 3u);
  EXPECT_EQ(log.Record(Denial(7), t0), 0u);
  EXPECT_EQ(log.denials_suppressed(), 2u);
  log.FlushAll();
  std::string text = ReadWholeFile(path);
  EXPECT_EQ(Count(text, R"("reason":"not delivered: the client hung up")"), 2);
  EXPECT_EQ(Count(text, R"("event":"deny")"), 3);
  EXPECT_THAT(text, HasSubstr(R"("event":"denialsSuppressed","peer":{"uid":7},"count":2)"));
}

// The count is not left waiting for the next denial of that uid: a flush
// writes it once the uid's budget has room again, and the last flush (the
// broker stopping) writes it whatever the budget.
TEST(AuditLogTest, WritesTheSuppressedCountLaterWithoutAnotherDenial) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/1, /*per_second=*/1}));
  absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 4; ++i) log.Record(Denial(7), At(t0));
  log.Flush(At(t0 + absl::Milliseconds(500)));
  EXPECT_EQ(Count(ReadWholeFile(path), "denialsSuppressed"), 0);
  log.Flush(At(t0 + absl::Seconds(1)));
  EXPECT_THAT(ReadWholeFile(path), HasSubstr(R"("peer":{"uid":7},"count":3)"));

  // The budget has one line again (the count costs none): one line, four
  // suppressed.
  for (int i = 0; i < 5; ++i) log.Record(Denial(7), At(t0 + absl::Seconds(1)));
  log.FlushAll();
  EXPECT_THAT(ReadWholeFile(path), HasSubstr(R"("peer":{"uid":7},"count":4)"));
  EXPECT_EQ(Count(ReadWholeFile(path), "denialsSuppressed"), 2);
}

// The budget runs on the monotonic clock, the lines show the wall clock. On
// the wall clock, a step back of T (an admin, NTP) held every bucket empty
// for T: denials were counted, not written, and the count waited. A step
// forward must not fill the buckets at once either.
TEST(AuditLogTest, TheDenialBudgetIgnoresStepsOfTheWallClock) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/1, /*per_second=*/1}));
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  const absl::Duration s0 = absl::Seconds(50);  // the monotonic clock then
  EXPECT_GT(log.Record(Denial(7), {t0, s0}), 0u);
  EXPECT_EQ(log.Record(Denial(7), {t0, s0}), 0u);  // over the budget

  // The wall clock steps back an hour. A second later the bucket has a
  // token again: the count, then the denial, stamped with the wall clock.
  const absl::Time back = t0 - absl::Hours(1) + absl::Seconds(1);
  EXPECT_GT(log.Record(Denial(7), {back, s0 + absl::Seconds(1)}), 0u);
  log.Flush({back, s0 + absl::Seconds(1)});
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 3u) << ReadWholeFile(path);
  const std::string stamp =
      absl::StrCat("{\"time\":\"", absl::FormatTime("%Y-%m-%dT%H:%M:%S", back, absl::UTCTimeZone()));
  EXPECT_THAT(lines[1], HasSubstr(R"("event":"denialsSuppressed","peer":{"uid":7},"count":1)"));
  EXPECT_TRUE(absl::StartsWith(lines[1], stamp)) << lines[1];
  EXPECT_TRUE(absl::StartsWith(lines[2], stamp)) << lines[2];

  // It steps forward two hours: no token until a second has passed on the
  // monotonic clock.
  const absl::Time ahead = t0 + absl::Hours(1);
  EXPECT_EQ(log.Record(Denial(7), {ahead, s0 + absl::Milliseconds(1500)}), 0u);
  log.Flush({ahead, s0 + absl::Milliseconds(1500)});
  EXPECT_EQ(Lines(ReadWholeFile(path)).size(), 3u);
  log.Flush({ahead, s0 + absl::Seconds(2)});
  lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_THAT(lines[3], HasSubstr(R"("event":"denialsSuppressed","peer":{"uid":7},"count":1)"));
}


// As reported: while one uid had denials suppressed, every flush walked
// the bucket of every uid denied in the last 20 s (16,384 uids: 395 us a
// flush, the loop flushing once per connection with replies). A flush
// looks only at the counts due; each still comes out on time.
TEST(AuditLogTest, AFlushLooksOnlyAtTheCountsDue) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/20, /*per_second=*/1}));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  constexpr uint32_t kUids = 4096;
  for (uint32_t uid = 1; uid <= kUids; ++uid) {
    for (int i = 0; i < 19; ++i) log.Record(Denial(uid), At(t0));
  }
  // Uid 1 goes over its budget: two more denials, one counted.
  log.Record(Denial(1), At(t0));
  EXPECT_EQ(log.Record(Denial(1), At(t0)), 0u);
  ASSERT_TRUE(log.has_pending());
  const uint64_t before = log.buckets_examined();
  for (int i = 0; i < 1000; ++i) log.Flush(At(t0 + absl::Milliseconds(i)));
  // Before the fix: kUids buckets a flush, 4 million in all.
  EXPECT_EQ(log.buckets_examined(), before);
  EXPECT_EQ(Count(ReadWholeFile(path), "denialsSuppressed"), 0);
  EXPECT_TRUE(log.has_pending());

  // A second after the bucket emptied it holds a token: the count is due,
  // and written by the next flush, with that flush's time.
  log.Flush(At(t0 + absl::Seconds(1)));
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), kUids * 19 + 2);
  EXPECT_THAT(lines.back(),
              HasSubstr(R"("event":"denialsSuppressed","peer":{"uid":1},"count":1)"));
  EXPECT_TRUE(absl::StartsWith(lines.back(), R"({"time":"1970-01-01T00:16:41.000Z")"))
      << lines.back();
  EXPECT_LE(log.buckets_examined(), before + 1);
  EXPECT_FALSE(log.has_pending());
}

// Counts fall due in the order of their buckets' refill, not of the
// denials: each flush writes exactly the counts due by then.
TEST(AuditLogTest, WritesEachCountWhenItsBucketHoldsATokenAgain) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/2, /*per_second=*/1}));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  // Uid 8 empties its bucket at t0; uid 7 at 0.5 s, and is over budget
  // then: its count is due at 1.5 s. Uid 8 is over budget at 0.6 s, with
  // 0.6 tokens: its count is due at 1 s, first.
  for (int i = 0; i < 2; ++i) log.Record(Denial(8), At(t0));
  for (int i = 0; i < 3; ++i) log.Record(Denial(7), At(t0 + absl::Milliseconds(500)));
  for (int i = 0; i < 2; ++i) log.Record(Denial(8), At(t0 + absl::Milliseconds(600)));
  EXPECT_EQ(log.denials_suppressed(), 3u);
  auto counts = [&] { return Count(ReadWholeFile(path), "denialsSuppressed"); };
  log.Flush(At(t0 + absl::Milliseconds(999)));
  EXPECT_EQ(counts(), 0);
  log.Flush(At(t0 + absl::Milliseconds(1001)));
  EXPECT_EQ(counts(), 1);
  EXPECT_THAT(ReadWholeFile(path), HasSubstr(R"("peer":{"uid":8},"count":2)"));
  log.Flush(At(t0 + absl::Milliseconds(1499)));
  EXPECT_EQ(counts(), 1);
  log.Flush(At(t0 + absl::Milliseconds(1501)));
  EXPECT_EQ(counts(), 2);
  EXPECT_THAT(ReadWholeFile(path), HasSubstr(R"("peer":{"uid":7},"count":1)"));
  EXPECT_FALSE(log.has_pending());
}

// As reported: a full bucket was dropped only by the walk for due counts,
// which ran only while some uid was over budget; otherwise the log kept
// one bucket for every uid ever denied. Now it holds those of the uids
// denied in the last two refill times (burst / per_second each), at most.
TEST(AuditLogTest, HoldsTheBudgetsOfRecentlyDeniedUidsOnly) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path, {/*burst=*/20, /*per_second=*/1}));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  const absl::Duration refill = absl::Seconds(20);
  for (uint32_t uid = 1; uid <= 1000; ++uid) log.Record(Denial(uid), At(t0));
  EXPECT_EQ(log.uids_budgeted(), 1000u);
  // Two refill times on, other uids denied: the first thousand are gone.
  for (uint32_t uid = 1001; uid <= 1010; ++uid) log.Record(Denial(uid), At(t0 + refill));
  for (uint32_t uid = 1011; uid <= 1020; ++uid) log.Record(Denial(uid), At(t0 + 2 * refill));
  EXPECT_LE(log.uids_budgeted(), 20u);
  // A flush sweeps too, with no denial.
  log.Flush(At(t0 + 4 * refill));
  EXPECT_EQ(log.uids_budgeted(), 0u);

  // A uid with a count waiting keeps its bucket, however long: the count
  // comes out all the same.
  for (int i = 0; i < 22; ++i) log.Record(Denial(5), At(t0 + 5 * refill));
  for (uint32_t uid = 2000; uid < 2010; ++uid) log.Record(Denial(uid), At(t0 + 9 * refill));
  log.Flush(At(t0 + 9 * refill));
  EXPECT_THAT(ReadWholeFile(path), HasSubstr(R"("peer":{"uid":5},"count":2)"));
}

// What the stderr line about a new file after deletion says of the lines
// that went to the deleted file since `named`, when it was last seen with
// its name.
std::string WentToTheDeletedFile(int lines, absl::string_view named) {
  return absl::StrCat(lines, lines == 1 ? " line" : " lines", " written since ", named,
                      ", when the file was last seen with its name, went to the deleted file");
}

// Deletes the log at `path` and puts a symlink in its place (to a file
// "elsewhere" in `dir`), which an open of the log refuses.
void DeleteAndPlantASymlink(testing::TempDir& dir, const std::string& path) {
  ASSERT_EQ(unlink(path.c_str()), 0);
  dir.WriteFile("elsewhere", "");
  ASSERT_EQ(symlink(dir.Join("elsewhere").c_str(), path.c_str()), 0);
}

// As reported: after `rm` of the log (not a rename), the broker appended
// to a file with no name; its lines, grants delivered, vanished at exit,
// and nothing said so. At most once a second a flush checks, and goes on
// in a new file at the path, with what it still held.
TEST(AuditLogTest, GoesOnInANewFileWhenTheLogIsDeleted) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  AuditEvent e = Denial(1);
  e.capability = "before";
  log.Record(e, At(t0));
  log.Flush(At(t0));
  ASSERT_EQ(unlink(path.c_str()), 0);
  CapturedStderr captured(dir.Join("stderr"));
  // Within the second: not checked yet.
  e.capability = "lost";
  log.Record(e, At(t0 + absl::Milliseconds(999)));
  log.Flush(At(t0 + absl::Milliseconds(999)));
  EXPECT_EQ(access(path.c_str(), F_OK), -1);
  e.capability = "after";
  log.Record(e, At(t0 + absl::Seconds(1)));
  EXPECT_EQ(log.Flush(At(t0 + absl::Seconds(1))), 0u);
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr(R"("capability":"after")"));
  // The lines written since the check that found the file named (at t0,
  // before that flush wrote "before") are counted for status: "lost", and
  // "before", which the broker cannot tell was written before the rm.
  EXPECT_EQ(log.lines_to_deleted_files(), 2u);
  std::optional<absl::Status> reopened = log.TakeReopenAfterDeletion();
  ASSERT_TRUE(reopened.has_value());
  EXPECT_OK(*reopened);
  EXPECT_FALSE(log.TakeReopenAfterDeletion().has_value());  // told once
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The new file is linked: later flushes stay in it, and say nothing more.
  log.Record(e, At(t0 + absl::Seconds(5)));
  log.Flush(At(t0 + absl::Seconds(5)));
  EXPECT_EQ(Lines(ReadWholeFile(path)).size(), 2u);
  EXPECT_FALSE(log.TakeReopenAfterDeletion().has_value());
  std::vector<std::string> said = Lines(captured.Release());
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], HasSubstr("audit log file was deleted"));
  EXPECT_THAT(said[0], HasSubstr(path));
  // Found deleted at the check at t0 + 1 s, which reopened at once.
  EXPECT_THAT(said[0], HasSubstr(WentToTheDeletedFile(2, "1970-01-01T00:16:40Z")));
  EXPECT_EQ(log.lines_to_deleted_files(), 2u);  // the new file's lines are not
}

// As reported: rm of the log, then SIGHUP within the second. Reopen wrote
// the lines it held to the old file, deleted: the grant was delivered with
// no record, and nothing said it was lost. They go to the new file.
TEST(AuditLogTest, ReopenAfterTheLogWasDeletedWritesWhatItHoldsToTheNewFile) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  AuditEvent e = Denial(1);
  e.granted = true;
  e.capability = "held";
  e.principal = "ops";
  ASSERT_NE(log.Record(e, At(absl::FromUnixSeconds(1000))), 0u);
  ASSERT_EQ(unlink(path.c_str()), 0);
  CapturedStderr captured(dir.Join("stderr"));
  ASSERT_OK(log.Reopen(path));
  EXPECT_TRUE(log.TakeLostLines().empty());
  std::vector<std::string> lines = Lines(ReadWholeFile(path));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], AllOf(HasSubstr(R"("capability":"held")"),
                              HasSubstr(R"("decision":"granted")")));
  std::vector<std::string> said = Lines(captured.Release());
  ASSERT_EQ(said.size(), 1u);
  EXPECT_THAT(said[0], AllOf(HasSubstr("audit log file was deleted"),
                             HasSubstr("0 lines written since")));
}

// If the path is refused (a symlink put there), the log goes on in the
// deleted file, says why once on stderr and to the loop (for capctl
// status), tries again each second, and goes on at the path once it can.
TEST(AuditLogTest, KeepsTheDeletedFileWhileThePathIsRefused) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  log.Flush(At(t0));
  DeleteAndPlantASymlink(dir, path);
  CapturedStderr captured(dir.Join("stderr"));
  for (int i = 1; i <= 3; ++i) {
    log.Record(Denial(1), At(t0 + absl::Seconds(i)));
    EXPECT_EQ(log.Flush(At(t0 + absl::Seconds(i))), 0u);  // not lost: in the deleted file
    EXPECT_EQ(log.lines_to_deleted_files(), static_cast<uint64_t>(i));  // ... lost with it
    std::optional<absl::Status> reopened = log.TakeReopenAfterDeletion();
    ASSERT_TRUE(reopened.has_value());
    EXPECT_THAT(*reopened, StatusIs(absl::StatusCode::kFailedPrecondition,
                                    AllOf(HasSubstr("deleted"), HasSubstr("symlink"),
                                          HasSubstr("lost with it"))));
  }
  EXPECT_EQ(ReadWholeFile(dir.Join("elsewhere")), "");
  ASSERT_EQ(unlink(path.c_str()), 0);
  log.Record(Denial(1), At(t0 + absl::Seconds(4)));
  log.Flush(At(t0 + absl::Seconds(4)));
  std::optional<absl::Status> reopened = log.TakeReopenAfterDeletion();
  ASSERT_TRUE(reopened.has_value());
  EXPECT_OK(*reopened);
  EXPECT_EQ(Lines(ReadWholeFile(path)).size(), 1u);
  std::vector<std::string> said = Lines(captured.Release());
  ASSERT_EQ(said.size(), 2u) << absl::StrJoin(said, "\n");
  EXPECT_THAT(said[0], HasSubstr("symlink"));
  EXPECT_THAT(said[1], HasSubstr("going on in a new file"));
  // Not copied: the three lines written while the path was refused are
  // counted, from when the file was last seen named (the check at t0).
  EXPECT_THAT(said[1], HasSubstr(WentToTheDeletedFile(3, "1970-01-01T00:16:40Z")));
  EXPECT_EQ(log.lines_to_deleted_files(), 3u);
  // A second deletion adds to the count.
  log.Flush(At(t0 + absl::Seconds(5)));  // the new file, named
  log.Record(Denial(1), At(t0 + absl::Seconds(5)));
  log.Flush(At(t0 + absl::Seconds(5)));
  ASSERT_EQ(unlink(path.c_str()), 0);
  log.Record(Denial(1), At(t0 + absl::Seconds(6)));
  log.Flush(At(t0 + absl::Seconds(6)));
  EXPECT_EQ(log.lines_to_deleted_files(), 4u);
}

// As reported: a refusal after deletion not yet taken by the loop came
// back after a SIGHUP had reopened the log, and status showed it until the
// next SIGHUP. A successful reopen drops it.
TEST(AuditLogTest, ASuccessfulReopenDropsARefusalAfterDeletion) {
  testing::TempDir dir;
  std::string path = dir.Join("audit.log");
  ASSERT_OK_AND_ASSIGN(AuditLog log, AuditLog::OpenFile(path));
  DeleteAndPlantASymlink(dir, path);
  CapturedStderr captured(dir.Join("stderr"));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  log.Record(Denial(1), At(t0));
  log.Flush(At(t0));  // the first check: refused, and not taken
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_OK(log.Reopen(path));  // SIGHUP
  EXPECT_FALSE(log.TakeReopenAfterDeletion().has_value());
  std::vector<std::string> said = Lines(captured.Release());
  ASSERT_EQ(said.size(), 2u) << absl::StrJoin(said, "\n");
  // Last seen named when it was opened (now, on the real clock).
  EXPECT_THAT(said[1], AllOf(HasSubstr("1 line written since "),
                             HasSubstr(", when the file was last seen with its name, went to "
                                       "the deleted file")));
  EXPECT_EQ(log.lines_to_deleted_files(), 1u);
  // The new file is checked from now on, as any.
  log.Record(Denial(1), At(t0 + absl::Seconds(1)));
  log.Flush(At(t0 + absl::Seconds(1)));
  EXPECT_FALSE(log.TakeReopenAfterDeletion().has_value());
  EXPECT_EQ(Lines(ReadWholeFile(path)).size(), 1u);
}

// A log given as an fd (stderr) has no path to reopen: never checked.
TEST(AuditLogTest, ALogOnAnFdIsNotReopened) {
  testing::TempDir dir;
  std::string path = dir.WriteFile("given.log", "", 0600);
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ASSERT_GE(fd.get(), 0);
  ASSERT_EQ(unlink(path.c_str()), 0);
  AuditLog log(fd.get());
  log.Record(Denial(1), At(absl::FromUnixSeconds(1000)));
  EXPECT_EQ(log.Flush(At(absl::FromUnixSeconds(1000))), 0u);
  EXPECT_FALSE(log.TakeReopenAfterDeletion().has_value());
  EXPECT_EQ(access(path.c_str(), F_OK), -1);
}

}  // namespace
}  // namespace capbroker::audit
