#include "services/journal/journal.h"

#include <fcntl.h>
#include <unistd.h>


#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::journal {
namespace {

using ::capbroker::testing::ReadWholeFile;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class JournalTest : public ::testing::Test {
 protected:
  UniqueFd OpenLog(int flags) {
    return UniqueFd(open(path_.c_str(), flags | O_CLOEXEC | O_CREAT, 0600));
  }
  std::string Contents() { return ReadWholeFile(path_); }

  TempDir dir_;
  std::string path_ = dir_.WriteFile("log", "earlier line\n");
  Peer peer_{"ops", 1000, 1000, 7};
};

TEST_F(JournalTest, AppendsNumberedRecordsAtTheEnd) {
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND)));
  ASSERT_OK_AND_ASSIGN(RecordId first, journal.Append(peer_, "one"));
  ASSERT_OK_AND_ASSIGN(RecordId second, journal.Append(peer_, "two"));
  EXPECT_EQ(first.seq, 1u);
  EXPECT_EQ(second.seq, 2u);
  EXPECT_EQ(first.run, second.run);
  std::string log = Contents();
  EXPECT_THAT(log, StartsWith("earlier line\n{\"run\":"));
  EXPECT_THAT(log, HasSubstr("\"seq\":2,"));
  EXPECT_THAT(log, HasSubstr("\"principal\":\"ops\",\"uid\":1000"));
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 3);
}

TEST_F(JournalTest, WritesLandAtTheEndEvenAfterAnLseek) {
  UniqueFd log = OpenLog(O_WRONLY | O_APPEND);
  const int raw = log.get();
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(std::move(log)));
  ASSERT_EQ(lseek(raw, 0, SEEK_SET), 0);  // someone moves the offset
  ASSERT_OK(journal.Append(peer_, "still at the end").status());
  std::string contents = Contents();
  EXPECT_THAT(contents, StartsWith("earlier line\n"));
  EXPECT_THAT(contents, HasSubstr("still at the end\"}\n"));
}

TEST_F(JournalTest, RefusesAnFdItCouldReadOrRewrite) {
  for (int flags : {O_WRONLY, O_RDWR | O_APPEND, O_RDONLY}) {
    EXPECT_THAT(Journal::Open(OpenLog(flags)),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("access = append")))
        << flags;
  }
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]);
  EXPECT_THAT(Journal::Open(UniqueFd(p[1])),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a FIFO")));
}

TEST_F(JournalTest, BadRecordsWriteNothing) {
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND)));
  EXPECT_THAT(journal.Append(peer_, "\xff"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(journal.Append(peer_, std::string(5000, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Contents(), "earlier line\n");
  EXPECT_EQ(journal.records(), 0u);
}

}  // namespace
}  // namespace capbroker::journal
