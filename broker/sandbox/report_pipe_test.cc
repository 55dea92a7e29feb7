#include "broker/sandbox/report_pipe.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <string>

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
    if (pipe2(fds, O_CLOEXEC) == 0) {
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

TEST(ReportPipeTest, EndOfFileWithoutFailureMeansExec) {
  Pipe pipe;
  ChildReporter reporter(pipe.write);
  reporter.Missing(3, "landlock: not supported by this kernel");
  reporter.Missing(7, "cgroup: no parent");
  pipe.CloseWrite();
  ASSERT_OK_AND_ASSIGN(ChildReport report, ReadChildReport(pipe.read, 1000));
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
  ASSERT_OK_AND_ASSIGN(ChildReport report, ReadChildReport(pipe.read, 5000));
  EXPECT_THAT(report.failure, StatusIs(absl::StatusCode::kNotFound,
                                       "program /x: No such file or directory"));
  ASSERT_EQ(report.missing.size(), 1u);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == kChildFailedExitCode);
}

TEST(ReportPipeTest, LongMessagesAreCut) {
  Pipe pipe;
  ChildReporter reporter(pipe.write);
  reporter.Missing(0, std::string(5000, 'x'));
  pipe.CloseWrite();
  ASSERT_OK_AND_ASSIGN(ChildReport report, ReadChildReport(pipe.read, 1000));
  ASSERT_EQ(report.missing.size(), 1u);
  EXPECT_EQ(report.missing[0].entry.size(), kMaxReportMessage);
}

TEST(ReportPipeTest, MalformedRecordsAreInternalErrors) {
  Pipe truncated;
  ASSERT_EQ(write(truncated.write, "F\1\0", 3), 3);
  truncated.CloseWrite();
  EXPECT_THAT(ReadChildReport(truncated.read, 1000), StatusIs(absl::StatusCode::kInternal));

  Pipe too_long;
  char record[9] = {'M', 0, 0, 0, 0};
  uint32_t length = 100000;
  memcpy(record + 5, &length, 4);
  ASSERT_EQ(write(too_long.write, record, sizeof record), 9);
  too_long.CloseWrite();
  EXPECT_THAT(ReadChildReport(too_long.read, 1000), StatusIs(absl::StatusCode::kInternal));

  Pipe unknown;
  char kind[9] = {'Z'};
  ASSERT_EQ(write(unknown.write, kind, sizeof kind), 9);
  unknown.CloseWrite();
  EXPECT_THAT(ReadChildReport(unknown.read, 1000), StatusIs(absl::StatusCode::kInternal));
}

TEST(ReportPipeTest, AChildThatNeverFinishesTimesOut) {
  Pipe pipe;  // the write end stays open
  EXPECT_THAT(ReadChildReport(pipe.read, 50), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

}  // namespace
}  // namespace capbroker::sandbox
