#include "broker/caps/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/fd_count.h"

namespace capbroker::caps {
namespace {

TEST(CreateSealedMemfdTest, HasSizeAndSeals) {
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, CreateSealedMemfd("scratch", 65536));
  EXPECT_TRUE(testing::IsCloseOnExec(fd.get()));
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 65536);
  int seals = fcntl(fd.get(), F_GET_SEALS);
  EXPECT_EQ(seals, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  EXPECT_NE(ftruncate(fd.get(), 10), 0);
  EXPECT_NE(ftruncate(fd.get(), 1 << 20), 0);
  EXPECT_NE(fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE), 0);
  void* p = mmap(nullptr, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  static_cast<char*>(p)[65535] = 1;
  munmap(p, 65536);
}

TEST(ReopenReadOnlyTest, CannotWriteOrMapWritable) {
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, CreateSealedMemfd("shared", 4096));
  ASSERT_OK_AND_ASSIGN(UniqueFd ro, ReopenReadOnly(fd.get()));
  EXPECT_TRUE(testing::IsCloseOnExec(ro.get()));
  EXPECT_EQ(fcntl(ro.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_EQ(write(ro.get(), "x", 1), -1);
  EXPECT_EQ(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro.get(), 0),
            MAP_FAILED);
  // It sees the writer's data.
  ASSERT_EQ(pwrite(fd.get(), "hi", 2, 0), 2);
  char buf[2];
  ASSERT_EQ(pread(ro.get(), buf, 2, 0), 2);
  EXPECT_EQ(buf[0], 'h');
}

TEST(ReopenReadOnlyTest, AnotherUidCannotReopenItReadWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  ASSERT_OK_AND_ASSIGN(UniqueFd fd, CreateSealedMemfd("shared", 4096));
  ASSERT_OK_AND_ASSIGN(UniqueFd ro, ReopenReadOnly(fd.get()));
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A grantee of another uid, with its /proc entries its own.
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    prctl(PR_SET_DUMPABLE, 1);
    std::string self = "/proc/self/fd/" + std::to_string(ro.get());
    char byte;
    if (pread(ro.get(), &byte, 1, 0) != 1) _exit(3);  // the grant itself works
    _exit(open(self.c_str(), O_RDWR | O_CLOEXEC) < 0 && errno == EACCES ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: reopened read-write; 2/3: test setup";
}

}  // namespace
}  // namespace capbroker::caps
