#include "broker/sandbox/report_pipe.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::sandbox {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

struct Pipe {
  int read = -1;
  int write = -1;
  Pipe() {
    int fds[2];
    // Non-blocking, as the parent reads it from its event loop.
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
      read = fds[0];
      write = fds[1];
    }
  }
  ~Pipe() {
    if (read >= 0) close(read);
    if (write >= 0) close(write);
  }
  void CloseWrite() {
    close(write);
    write = -1;
  }
};

// The whole report, read once the write end is closed (one call suffices:
// everything is in the pipe).
absl::StatusOr<ChildReport> ReadAll(int fd) {
  ChildReportReader reader;
  absl::StatusOr<std::optional<ChildReport>> report = reader.ReadAvailable(fd);
  if (!report.ok()) return report.status();
  if (!report->has_value()) return absl::InternalError("no end of file");
  return std::move(**report);
}

TEST(ReportPipeTest, EndOfFileWithoutFailureMeansExec) {
  Pipe pipe;
  ChildReporter reporter(pipe.write);
  reporter.Missing(3, "landlock: not supported by this kernel");
  reporter.Missing(7, "cgroup: no parent");
  pipe.CloseWrite();
  ASSERT_OK_AND_ASSIGN(ChildReport report, ReadAll(pipe.read));
  EXPECT_OK(report.failure);
  EXPECT_THAT(report.missing,
              ElementsAre(Field(&MissingReport::entry, "landlock: not supported by this kernel"),
                          Field(&MissingReport::entry, "cgroup: no parent")));
  EXPECT_EQ(report.missing[0].tag, 3);
  EXPECT_EQ(report.missing[1].tag, 7);
}

TEST(ReportPipeTest, FailureKeepsCodeAndMessageAndExits) {
  Pipe pipe;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ChildReporter reporter(pipe.write);
    reporter.Missing(1, "first");
    reporter.Fail(absl::NotFoundError("program /x: No such file or directory"));
  }
  pipe.CloseWrite();
  // Once the child has exited, its whole report is in the pipe.
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildFailedExitCode);
  ASSERT_OK_AND_ASSIGN(ChildReport report, ReadAll(pipe.read));
  EXPECT_THAT(report.failure, StatusIs(absl::StatusCode::kNotFound,
                                       "program /x: No such file or directory"));
  ASSERT_EQ(report.missing.size(), 1u);
}

TEST(ReportPipeTest, LongMessagesAreCut) {
  Pipe pipe;
  ChildReporter reporter(pipe.write);
  reporter.Missing(0, std::string(5000, 'x'));
  pipe.CloseWrite();
  ASSERT_OK_AND_ASSIGN(ChildReport report, ReadAll(pipe.read));
  ASSERT_EQ(report.missing.size(), 1u);
  EXPECT_EQ(report.missing[0].entry.size(), kMaxReportMessage);
}

TEST(ReportPipeTest, MalformedRecordsAreInternalErrors) {
  Pipe truncated;
  ASSERT_EQ(write(truncated.write, "F\1\0", 3), 3);
  truncated.CloseWrite();
  EXPECT_THAT(ReadAll(truncated.read), StatusIs(absl::StatusCode::kInternal));

  Pipe too_long;
  char record[9] = {'M', 0, 0, 0, 0};
  uint32_t length = 100000;
  memcpy(record + 5, &length, 4);
  ASSERT_EQ(write(too_long.write, record, sizeof record), 9);
  too_long.CloseWrite();
  EXPECT_THAT(ReadAll(too_long.read), StatusIs(absl::StatusCode::kInternal));

  Pipe unknown;
  char kind[9] = {'Z'};
  ASSERT_EQ(write(unknown.write, kind, sizeof kind), 9);
  unknown.CloseWrite();
  EXPECT_THAT(ReadAll(unknown.read), StatusIs(absl::StatusCode::kInternal));
}

// The reader never waits: what has arrived is kept until end of file.
TEST(ReportPipeTest, RecordsArePiecedTogetherUntilEndOfFile) {
  Pipe pipe;
  ChildReportReader reader;
  ASSERT_OK_AND_ASSIGN(std::optional<ChildReport> report, reader.ReadAvailable(pipe.read));
  EXPECT_FALSE(report.has_value());
  ChildReporter reporter(pipe.write);
  reporter.Missing(2, "first");
  ASSERT_OK_AND_ASSIGN(report, reader.ReadAvailable(pipe.read));
  EXPECT_FALSE(report.has_value());
  reporter.Missing(4, "second");
  pipe.CloseWrite();
  ASSERT_OK_AND_ASSIGN(report, reader.ReadAvailable(pipe.read));
  ASSERT_TRUE(report.has_value());
  EXPECT_OK(report->failure);
  EXPECT_THAT(report->missing, ElementsAre(Field(&MissingReport::entry, "first"),
                                           Field(&MissingReport::entry, "second")));
}

TEST(ReportPipeTest, AnEndlessReportIsRefused) {
  Pipe pipe;
  ChildReportReader reader;
  ChildReporter reporter(pipe.write);
  absl::StatusOr<std::optional<ChildReport>> report = std::nullopt;
  // The pipe holds 64 KiB; the reader stops at 256 KiB.
  for (int i = 0; i < 1000 && report.ok(); ++i) {
    reporter.Missing(0, std::string(kMaxReportMessage, 'x'));
    report = reader.ReadAvailable(pipe.read);
  }
  EXPECT_THAT(report, StatusIs(absl::StatusCode::kInternal, "the child's report is too long"));
}

}  // namespace
}  // namespace capbroker::sandbox
