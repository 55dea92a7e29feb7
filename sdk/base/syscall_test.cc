#include "sdk/base/syscall.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

TEST(ErrnoStatusTest, NamesCallAndReason) {
  absl::Status status = ErrnoStatus(ENOENT, "open(/nope)");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound,
                               HasSubstr("open(/nope)")));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound,
                               HasSubstr("No such file")));
}

TEST(TakeFdTest, OwnsValidFd) {
  ASSERT_OK_AND_ASSIGN(UniqueFd fd,
                       TakeFd(open("/dev/null", O_RDONLY | O_CLOEXEC), "open"));
  EXPECT_TRUE(fd.valid());
}

TEST(TakeFdTest, ReportsErrno) {
  auto fd = TakeFd(open("/nonexistent/x", O_RDONLY | O_CLOEXEC),
                   "open(/nonexistent/x)");
  EXPECT_THAT(fd, StatusIs(absl::StatusCode::kNotFound,
                           HasSubstr("/nonexistent/x")));
}

// A directory of its own in the test's temporary directory, removed with
// what the test put there.
class Openat2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string name = ::testing::TempDir() + "/openat2.XXXXXX";
    ASSERT_NE(mkdtemp(name.data()), nullptr);
    dir_ = name;
    dir_fd_.reset(open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir_fd_.valid());
  }
  void TearDown() override {
    unlinkat(dir_fd_.get(), "out", 0);
    rmdir(dir_.c_str());
  }

  std::string dir_;
  UniqueFd dir_fd_;
};

TEST_F(Openat2Test, AddsCloseOnExec) {
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, Openat2(AT_FDCWD, dir_, O_PATH | O_DIRECTORY, 0, 0));
  EXPECT_EQ(fcntl(fd.get(), F_GETFD), FD_CLOEXEC);
  ASSERT_OK_AND_ASSIGN(UniqueFd read, Openat2(AT_FDCWD, "/dev/null", O_RDONLY, 0, 0));
  EXPECT_EQ(fcntl(read.get(), F_GETFD), FD_CLOEXEC);
}

// Out of the directory by '..', by an absolute path and by a symlink: each
// refused with EXDEV, which the status keeps.
TEST_F(Openat2Test, RefusesEscapeBeneath) {
  ASSERT_EQ(symlinkat("/", dir_fd_.get(), "out"), 0);
  for (const std::string path : {"..", "/", "out", "out/etc"}) {
    SCOPED_TRACE(path);
    absl::StatusOr<UniqueFd> fd = Openat2(dir_fd_.get(), path, O_PATH, 0, RESOLVE_BENEATH);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(OpenatErrno(fd.status()), EXDEV);
    EXPECT_THAT(fd.status().message(),
                HasSubstr(absl::StrCat("openat2(fd=", dir_fd_.get(), ", ", path, ")")));
  }
  // The same link followed without RESOLVE_BENEATH leads out: the refusal
  // above is RESOLVE_BENEATH's.
  EXPECT_OK(Openat2(dir_fd_.get(), "out", O_PATH, 0, 0).status());
}

TEST_F(Openat2Test, MissingNamesThePathAndKeepsTheErrno) {
  const std::string missing = dir_ + "/nope";
  absl::StatusOr<UniqueFd> fd = Openat2(AT_FDCWD, missing, O_RDONLY, 0, 0);
  EXPECT_THAT(fd, StatusIs(absl::StatusCode::kNotFound,
                           HasSubstr(absl::StrCat("openat2(", missing, "): No such file"))));
  EXPECT_EQ(OpenatErrno(fd.status()), ENOENT);
  // ENOTDIR, which the code does not tell from other failed preconditions.
  fd = Openat2(AT_FDCWD, "/dev/null/x", O_RDONLY, 0, 0);
  EXPECT_EQ(OpenatErrno(fd.status()), ENOTDIR);
  EXPECT_EQ(OpenatErrno(ErrnoStatus(ENOENT, "open(/nope)")), 0) << "only Openat2's statuses";
  EXPECT_EQ(OpenatErrno(absl::OkStatus()), 0);
}

TEST(RetryEintrTest, ReturnsFirstNonEintrResult) {
  int calls = 0;
  int result = RetryEintr([&] {
    ++calls;
    if (calls < 3) {
      errno = EINTR;
      return -1;
    }
    return 42;
  });
  EXPECT_EQ(result, 42);
  EXPECT_EQ(calls, 3);
}

TEST(RetryEintrTest, StopsOnOtherErrors) {
  int calls = 0;
  int result = RetryEintr([&] {
    ++calls;
    errno = EBADF;
    return -1;
  });
  EXPECT_EQ(result, -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(calls, 1);
}

TEST(SetNonBlockingTest, TogglesFlag) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  ASSERT_OK(SetNonBlocking(r.get(), true));
  EXPECT_TRUE(fcntl(r.get(), F_GETFL) & O_NONBLOCK);
  ASSERT_OK(SetNonBlocking(r.get(), false));
  EXPECT_FALSE(fcntl(r.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_THAT(SetNonBlocking(-1, true),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fd=-1")));
}

// PollUntil's answer: 1 ready, 0 the deadline passed, -1 an error.
int Polled(int fd, short events, absl::Duration deadline) {
  absl::StatusOr<bool> ready = PollUntil(fd, events, deadline);
  return ready.ok() ? *ready : -1;
}

TEST(PollUntilTest, ReadyOrDeadlinePassed) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  // Nothing to read: the deadline passes (one already past, and a short one).
  EXPECT_EQ(Polled(r.get(), POLLIN, MonotonicNow() - absl::Seconds(1)), 0);
  EXPECT_EQ(Polled(r.get(), POLLIN, DeadlineAfter(absl::Milliseconds(10))), 0);
  // No deadline: no wait here at all.
  EXPECT_EQ(Polled(r.get(), POLLIN, DeadlineAfter(absl::InfiniteDuration())), 1);
  ASSERT_EQ(write(w.get(), "x", 1), 1);
  EXPECT_EQ(Polled(r.get(), POLLIN, DeadlineAfter(absl::Hours(1))), 1);
  // Past the deadline, what is there already still counts: one look.
  EXPECT_EQ(Polled(r.get(), POLLIN, MonotonicNow() - absl::Seconds(1)), 1);
  EXPECT_EQ(Polled(w.get(), POLLOUT, DeadlineAfter(absl::Hours(1))), 1);
  // Not an fd: an error, not a wait (poll(2) would skip a negative one).
  const int closed = r.get();
  r.reset();
  for (int fd : {closed, -1}) {
    EXPECT_THAT(PollUntil(fd, POLLIN, DeadlineAfter(absl::Hours(1))),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(absl::StrCat("poll(fd=", fd, ")"))));
  }
}

TEST(IsNonBlockingTest, ReadsTheFlag) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd r(fds[0]), w(fds[1]);
  EXPECT_EQ(IsNonBlocking(r.get()).value_or(false), true);
  ASSERT_OK(SetNonBlocking(r.get(), false));
  EXPECT_EQ(IsNonBlocking(r.get()).value_or(true), false);
  EXPECT_THAT(IsNonBlocking(-1), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Inherited fds stay open (someone may rely on them) but are no longer
// passed on: those below `first` are left as they were.
TEST(MarkCloseOnExecFromTest, MarksFromFirstUpAndClosesNothing) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, 0), 0);  // as a shell passes them: inheritable
  UniqueFd low(fds[0]), high(fds[1]);
  ASSERT_LT(low.get(), high.get());
  ASSERT_OK(MarkCloseOnExecFrom(static_cast<unsigned>(high.get())));
  EXPECT_EQ(fcntl(low.get(), F_GETFD), 0) << "below first: untouched";
  EXPECT_EQ(fcntl(high.get(), F_GETFD), FD_CLOEXEC) << "still open, and close-on-exec";
  ASSERT_OK(MarkCloseOnExecFrom(static_cast<unsigned>(low.get())));
  EXPECT_EQ(fcntl(low.get(), F_GETFD), FD_CLOEXEC);
  // Open: a byte goes through.
  ASSERT_EQ(write(high.get(), "x", 1), 1);
  char byte = 0;
  EXPECT_EQ(read(low.get(), &byte, 1), 1);
}

}  // namespace
}  // namespace capbroker
