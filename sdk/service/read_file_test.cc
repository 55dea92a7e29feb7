#include "sdk/service/read_file.h"

#include <fcntl.h>
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

}  // namespace
}  // namespace capbroker
