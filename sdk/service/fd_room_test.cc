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

// In a child that leaves itself 2 free fds: things that hold their fds
// already count, but only once the reserve is there.
int RoomCountsHeldFdsAfterTheReserve() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
  limit.rlim_cur = 64;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return 11;
  absl::StatusOr<size_t> free = FreeFdSlots(1000);
  if (!free.ok() || *free < 2) return 12;
  for (size_t i = 2; i < *free; ++i) {
    if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) return 13;
  }
  // 2 free + 5 held: below a reserve of 8, no room at all (5 would leave
  // the table with 2 fds, under the reserve, for good).
  absl::StatusOr<size_t> short_of_reserve = FdRoomFor(100, 8, 5);
  if (!short_of_reserve.ok() || *short_of_reserve != 0) return 14;
  // 2 free + 10 held, reserve 8: room for 4.
  absl::StatusOr<size_t> four = FdRoomFor(100, 8, 10);
  if (!four.ok() || *four != 4) return 15;
  // Never more than wanted.
  absl::StatusOr<size_t> capped = FdRoomFor(3, 8, 10);
  if (!capped.ok() || *capped != 3) return 16;
  return 0;
}

TEST(FdRoomForTest, HeldFdsCountOnlyAfterTheReserve) {
  EXPECT_EQ(testing::ExitCodeInChild(RoomCountsHeldFdsAfterTheReserve), 0);
}

}  // namespace
}  // namespace capbroker
