#include "sdk/service/read_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

TEST(ReadRegularFileTest, ReadsFromTheStartWhateverTheOffset) {
  TempDir dir;
  UniqueFd fd(open(dir.WriteFile("f", "hello").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(lseek(fd.get(), 3, SEEK_SET), 3);
  ASSERT_OK_AND_ASSIGN(std::string data, ReadRegularFile(fd.get(), 5, "f"));
  EXPECT_EQ(data, "hello");
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), 3);
}

TEST(ReadRegularFileTest, RefusesTooLargeOtherKindsAndUnreadable) {
  TempDir dir;
  std::string path = dir.WriteFile("f", "hello");
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_THAT(ReadRegularFile(fd.get(), 4, "f"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("f: 5 bytes")));
  UniqueFd dirfd(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_THAT(ReadRegularFile(dirfd.get(), 4, "d"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("d: a directory")));
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  EXPECT_THAT(ReadRegularFile(r.get(), 4, "p"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a FIFO")));
  UniqueFd wronly(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  EXPECT_THAT(ReadRegularFile(wronly.get(), 10, "w"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not open for reading")));
}

// The limit holds for what is read, not only for the size fstat gave: a
// file of /proc says 0 bytes and holds more (/proc/self/status: over 1000
// bytes). A regular file that grows between fstat and pread takes the same
// path (more to read than st_size said); it cannot be made to grow at that
// moment without a hook in ReadRegularFile, so /proc stands in for it.
TEST(ReadRegularFileTest, TheLimitHoldsForWhatIsReadNotOnlyForTheSizeFstatGave) {
  UniqueFd status(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(status.valid());
  struct stat st {};
  ASSERT_EQ(fstat(status.get(), &st), 0);
  ASSERT_EQ(st.st_size, 0);
  EXPECT_THAT(ReadRegularFile(status.get(), 100, "status"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("status: more than the 100 bytes allowed")));
  // Within the limit, all of it is read, past the 0 bytes fstat said.
  ASSERT_OK_AND_ASSIGN(std::string data, ReadRegularFile(status.get(), 1 << 16, "status"));
  EXPECT_GT(data.size(), 100u);
  EXPECT_THAT(data, ::testing::StartsWith("Name:"));
  EXPECT_THAT(data, ::testing::EndsWith("\n"));
}

}  // namespace
}  // namespace capbroker
