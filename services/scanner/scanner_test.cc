#include "services/scanner/scanner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "services/scanner/eicar.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::scanner {
namespace {

using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

std::vector<Signature> Database() {
  return {{"Eicar-Test-Signature", testing::Eicar()}, {"Other", "\x01\x02\x03\x04"}};
}

class ScannerTest : public ::testing::Test {
 protected:
  UniqueFd Open(absl::string_view content, int flags = O_RDONLY) {
    return UniqueFd(open(dir_.WriteFile("f", content).c_str(), flags | O_CLOEXEC));
  }
  TempDir dir_;
};

TEST_F(ScannerTest, CleanAndInfected) {
  Scanner scanner(Database());
  ASSERT_OK_AND_ASSIGN(Verdict clean, scanner.Scan(Open("nothing to see").get()));
  EXPECT_EQ(clean.signature, std::nullopt);
  EXPECT_EQ(clean.bytes_scanned, 14u);
  ASSERT_OK_AND_ASSIGN(Verdict infected, scanner.Scan(Open("pre" + testing::Eicar()).get()));
  EXPECT_EQ(infected.signature, "Eicar-Test-Signature");
  ASSERT_OK_AND_ASSIGN(Verdict other, scanner.Scan(Open("..\x01\x02\x03\x04").get()));
  EXPECT_EQ(other.signature, "Other");
}

TEST_F(ScannerTest, FindsASignatureAcrossChunkBoundaries) {
  Scanner scanner(Database(), Scanner::Options{.max_file_bytes = 1 << 20, .chunk_bytes = 4096});
  for (size_t at : {4096 - 68, 4096 - 30, 4095, 4 * 4096 - 1}) {
    std::string content(5 * 4096, 'x');
    content.replace(at, 68, testing::Eicar());
    ASSERT_OK_AND_ASSIGN(Verdict v, scanner.Scan(Open(content).get()));
    EXPECT_EQ(v.signature, "Eicar-Test-Signature") << "at " << at;
  }
}

TEST_F(ScannerTest, ReadsFromTheStartWhateverTheOffset) {
  Scanner scanner(Database());
  UniqueFd fd = Open(testing::Eicar() + "tail");
  ASSERT_EQ(lseek(fd.get(), 70, SEEK_SET), 70);
  ASSERT_OK_AND_ASSIGN(Verdict v, scanner.Scan(fd.get()));
  EXPECT_EQ(v.signature, "Eicar-Test-Signature");
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), 70);
}

TEST_F(ScannerTest, RefusesWhatIsNotAReadableRegularFileOrTooLarge) {
  Scanner scanner(Database(), Scanner::Options{.max_file_bytes = 8192, .chunk_bytes = 4096});
  EXPECT_THAT(scanner.Scan(Open(std::string(8193, 'x')).get()),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("8193 bytes")));
  EXPECT_THAT(scanner.Scan(Open("x", O_WRONLY).get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not open for reading")));
  EXPECT_THAT(scanner.Scan(Open("x", O_PATH).get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not open for reading")));
  UniqueFd dir(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_THAT(scanner.Scan(dir.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a directory")));
  ASSERT_EQ(mkfifo(dir_.Join("fifo").c_str(), 0600), 0);
  UniqueFd fifo(open(dir_.Join("fifo").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  EXPECT_THAT(scanner.Scan(fifo.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a FIFO")));
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_THAT(scanner.Scan(null.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a character device")));
}

// The limit holds for what is read, not only for the size fstat gave: a
// file of /proc says 0 bytes and holds more (/proc/self/status: over 1000
// bytes), as does a file that grows while it is scanned.
TEST_F(ScannerTest, RefusesAFileThatHoldsMoreThanItsSizeSaid) {
  Scanner scanner(Database(), Scanner::Options{.max_file_bytes = 100, .chunk_bytes = 4096});
  UniqueFd status(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(status.valid());
  struct stat st {};
  ASSERT_EQ(fstat(status.get(), &st), 0);
  ASSERT_EQ(st.st_size, 0);
  EXPECT_THAT(scanner.Scan(status.get()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("more than the 100 bytes allowed")));
}

}  // namespace
}  // namespace capbroker::scanner
