#include "services/journal/journal.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/limits.h"
#include "services/journal/record.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/syscall_filter.h"
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
  // The log held something: the run's first record starts with a newline
  // (see TheFirstRecordOfARunNeverRunsIntoAFragmentAnEarlierRunLeft).
  EXPECT_THAT(log, StartsWith("earlier line\n\n{\"run\":"));
  EXPECT_THAT(log, HasSubstr("\"seq\":2,"));
  EXPECT_THAT(log, HasSubstr("\"principal\":\"ops\",\"uid\":1000"));
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 4);
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

// When fdatasync fails after a whole record was written, the record is in
// the log under its seq: the answer says so, kDataLoss rather than the
// errno's kUnavailable (EIO), which would have a client append it twice.
// The sync fails by a seccomp filter acting on the log's fd, in a child.
TEST_F(JournalTest, AFailedSyncAfterTheWriteSaysTheRecordWasWritten) {
  UniqueFd log = OpenLog(O_WRONLY | O_APPEND);
  ASSERT_TRUE(log.valid());
  const int raw = log.get();
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(std::move(log), "journal-log"));
  ASSERT_OK(journal.Append(peer_, "synced").status());
  EXPECT_EQ(::capbroker::testing::ExitCodeInChild([&] {
              const ::capbroker::testing::SyscallFilter failing_sync(
                  SYS_fdatasync, 0, static_cast<uint32_t>(raw), SECCOMP_RET_ERRNO | EIO);
              if (failing_sync.Install(false) != 0) return 1;
              absl::StatusOr<RecordId> id = journal.Append(peer_, "written, not synced");
              if (id.status().code() != absl::StatusCode::kDataLoss) return 2;
              if (id.status().message() !=
                  absl::StrCat("record 2 of run ", journal.run(),
                               " was written but not synced (do not append it again; it may "
                               "not survive a crash): fdatasync(journal-log): "
                               "Input/output error")) {
                return 3;
              }
              return 0;
            }),
            0);
  std::string contents = Contents();
  EXPECT_THAT(contents, HasSubstr("\"seq\":2,"));
  EXPECT_THAT(contents, HasSubstr("written, not synced\"}\n"));
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

// Messages name the log by its grant, as the service's command names it
// (--grant=NAME), not by the default "log".
TEST_F(JournalTest, MessagesNameTheGrant) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]);
  EXPECT_THAT(Journal::Open(UniqueFd(p[1]), "journal-log"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("journal-log: a FIFO")));
  EXPECT_THAT(Journal::Open(OpenLog(O_WRONLY), "journal-log"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("journal-log: not an append-only fd")));
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND), "journal-log"));
  ASSERT_NE(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit none = old;
  none.rlim_cur = Contents().size();  // not a byte more
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &none), 0);
  absl::Status refused = journal.Append(peer_, "one").status();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_THAT(refused,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("write(journal-log): ")));
}

TEST_F(JournalTest, BadRecordsWriteNothing) {
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND)));
  EXPECT_THAT(journal.Append(peer_, "\xff"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(journal.Append(peer_, std::string(5000, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Contents(), "earlier line\n");
  EXPECT_EQ(journal.records(), 0u);
}

// The log cannot be trimmed, so a client must not be able to grow it
// without bound: past max_log_bytes, records are refused and nothing is
// written.
TEST_F(JournalTest, RefusesRecordsBeyondTheSizeLimit) {
  const uint64_t limit = LeastMaxLogBytes();
  Journal::Options options;
  options.max_log_bytes = limit;
  ASSERT_OK_AND_ASSIGN(Journal journal,
                       Journal::Open(OpenLog(O_WRONLY | O_APPEND), kDefaultGrant,
                                     std::move(options)));
  absl::Status refused;
  int appended = 0;
  for (; appended < 100; ++appended) {
    refused = journal.Append(peer_, std::string(1000, 'x')).status();
    if (!refused.ok()) break;
  }
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                HasSubstr(absl::StrCat("limit of ", limit,
                                                       " bytes (--max-log-bytes)"))));
  EXPECT_GT(appended, 0);
  const std::string full = Contents();
  EXPECT_LE(full.size(), limit);
  EXPECT_GT(full.size() + 1150, limit) << "refused while a record had room";
  EXPECT_EQ(std::count(full.begin(), full.end(), '\n'), 2 + appended);  // and the run's first
  EXPECT_THAT(journal.Append(peer_, std::string(1000, 'x')).status(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Contents(), full);
  EXPECT_EQ(journal.records(), static_cast<uint64_t>(appended));
  EXPECT_EQ(Journal::Options().max_log_bytes, uint64_t{1} << 30);
}

// A limit below one record of the largest size (0, say) would leave a
// journal that says it is ready and refuses records the protocol allows,
// even on an empty log: it is refused. At the least, an empty log takes a
// record of the largest text from a principal of the longest name.
TEST_F(JournalTest, TheSizeLimitHasRoomForARecordOfTheLargestSize) {
  path_ = dir_.WriteFile("empty", "");
  for (uint64_t limit : {uint64_t{0}, uint64_t{4096}, LeastMaxLogBytes() - 1}) {
    Journal::Options options;
    options.max_log_bytes = limit;
    EXPECT_THAT(Journal::Open(OpenLog(O_WRONLY | O_APPEND), kDefaultGrant, std::move(options)),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(absl::StrCat("(--max-log-bytes) of ", limit,
                                                " bytes has no room for a record of the largest "
                                                "size; the least is ", LeastMaxLogBytes()))));
  }
  Journal::Options options;
  options.max_log_bytes = LeastMaxLogBytes();
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND),
                                                      kDefaultGrant, std::move(options)));
  const Peer longest{std::string(wire::kMaxNameBytes, '\x01'), UINT32_MAX, UINT32_MAX, INT32_MIN};
  ASSERT_OK(journal.Append(longest, std::string(kMaxRecordTextBytes, '\x01')).status());
  EXPECT_GT(Contents().size(), 25000u);
}

// A write cut short (a full disk; here the file size limit) leaves a
// fragment of a line, and the newline that would end it usually fails for
// the same reason. The next record must not run into the fragment. And a
// write refused for the file size limit (EFBIG, with SIGXFSZ ignored as
// main() does) is a quota, kResourceExhausted.
TEST_F(JournalTest, ARecordCutShortNeverRunsIntoTheNext) {
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND)));
  ASSERT_NE(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  // "earlier line\n", then the run's first record (its leading newline and
  // 50 bytes of the record).
  small.rlim_cur = 13 + 1 + 50;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status cut = journal.Append(peer_, "one").status();
  absl::Status full = journal.Append(peer_, "two").status();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_THAT(cut, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("wrote 51 of")));
  EXPECT_THAT(full, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("RLIMIT_FSIZE")));
  ASSERT_EQ(Contents().size(), 64u);

  // The cut "one" spent seq 1 (its fragment carries it); "two", of which
  // nothing was written, spent none. So the fragment and the next record
  // never share a (run, seq).
  ASSERT_OK_AND_ASSIGN(RecordId three, journal.Append(peer_, "three"));
  ASSERT_OK(journal.Append(peer_, "four").status());
  EXPECT_EQ(three.seq, 2u);
  std::vector<std::string> lines = absl::StrSplit(Contents(), '\n');
  ASSERT_EQ(lines.size(), 6u) << Contents();  // the last one empty
  EXPECT_EQ(lines[0], "earlier line");
  EXPECT_EQ(lines[1], "");          // the run's first record began so
  EXPECT_EQ(lines[2].size(), 50u);  // the fragment, ended
  EXPECT_THAT(lines[2], HasSubstr("\"seq\":1,"));
  EXPECT_THAT(lines[3], StartsWith("{\"run\":"));
  EXPECT_THAT(lines[3], HasSubstr("\"seq\":2,"));
  EXPECT_THAT(lines[3], HasSubstr("\"text\":\"three\"}"));
  EXPECT_THAT(lines[4], HasSubstr("\"text\":\"four\"}"));
  EXPECT_EQ(lines[5], "");
}

// A fragment that an earlier run left (its newline failed too, and the
// run ended) is not known to this one, which cannot read the log: its
// first record starts with a newline all the same, so that it never runs
// into one. After a whole line that leaves an empty line, which readers
// must skip (services/README.md).
TEST_F(JournalTest, TheFirstRecordOfARunNeverRunsIntoAFragmentAnEarlierRunLeft) {
  path_ = dir_.WriteFile("cut", "{\"run\":1");
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND)));
  ASSERT_OK(journal.Append(peer_, "after").status());
  ASSERT_OK(journal.Append(peer_, "and on").status());
  std::vector<std::string> lines = absl::StrSplit(Contents(), '\n');
  ASSERT_EQ(lines.size(), 4u) << Contents();  // the last one empty
  EXPECT_EQ(lines[0], "{\"run\":1");       // the fragment, ended
  EXPECT_THAT(lines[1], StartsWith("{\"run\":"));
  EXPECT_THAT(lines[1], HasSubstr("\"text\":\"after\"}"));
  EXPECT_THAT(lines[2], HasSubstr("\"text\":\"and on\"}"));
  EXPECT_EQ(lines[3], "");
}

// An empty log gets no empty line.
TEST_F(JournalTest, AnEmptyLogStartsWithItsFirstRecord) {
  path_ = dir_.WriteFile("empty", "");
  ASSERT_OK_AND_ASSIGN(Journal journal, Journal::Open(OpenLog(O_WRONLY | O_APPEND)));
  ASSERT_OK(journal.Append(peer_, "first").status());
  EXPECT_THAT(Contents(), StartsWith("{\"run\":"));
}

}  // namespace
}  // namespace capbroker::journal
