#include "sdk/service/fd_room.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/child_exit.h"

namespace capbroker {
namespace {

TEST(FreeFdSlotsTest, StopsCountingAtEnough) {
  ASSERT_OK_AND_ASSIGN(size_t free, FreeFdSlots(3));
  EXPECT_EQ(free, 3u);
}

// In a child, which lowers its limit: each fd opened takes one, and as
// many fds as it says can be opened, then none.
int OpenAsManyAsFree() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
  limit.rlim_cur = 64;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 11;
  absl::StatusOr<size_t> free = FreeFdSlots(1000);
  if (!free.ok() || *free < 2 || *free > 64) return 12;
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) return 13;
  absl::StatusOr<size_t> after_pipe = FreeFdSlots(1000);
  if (!after_pipe.ok() || *after_pipe != *free - 2) return 14;
  for (size_t i = 0; i < *after_pipe; ++i) {
    if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) return 15;
  }
  if (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0 || errno != EMFILE) return 16;
  absl::StatusOr<size_t> none = FreeFdSlots(1000);
  if (!none.ok() || *none != 0) return 17;
  return 0;
}

TEST(FreeFdSlotsTest, CountsWhatRlimitNofileLeaves) {
  EXPECT_EQ(testing::ExitCodeInChild(OpenAsManyAsFree), 0);
}

}  // namespace
}  // namespace capbroker
