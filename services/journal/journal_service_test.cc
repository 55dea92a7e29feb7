// The journal's serving code in one process: JournalHandler on a
// ConnectionLoop over socketpairs, driven by hostile datagrams, by the
// client library and by the CLI.
#include <fcntl.h>
#include <unistd.h>

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/loop_harness.h"
#include "sdk/wire/unix_socket.h"
#include "services/journal/client.h"
#include "services/journal/journal.capnp.h"
#include "services/journal/journal_cli.h"
#include "services/journal/journal_handler.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/gone_service.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/fixtures/undeliverable_stream.h"

namespace capbroker::journal {
namespace {

using ::capbroker::testing::CountOpenFds;
using ::capbroker::testing::LoopHarness;
using ::capbroker::testing::ReadWholeFile;
using ::capbroker::testing::ServingThread;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

Journal OpenJournal(const std::string& path) {
  absl::StatusOr<Journal> journal =
      Journal::Open(UniqueFd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC)));
  EXPECT_OK(journal.status());
  return std::move(journal).value();
}

class JournalServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(harness_.Start());
    ASSERT_OK_AND_ASSIGN(client_, harness_.Connect(Peer{"auditor", 1234, 99, 555}));
    baseline_ = CountOpenFds();
  }

  absl::StatusOr<wire::Incoming> Append(absl::string_view text, absl::Span<const int> fds = {}) {
    capnp::MallocMessageBuilder request;
    request.initRoot<schema::Request>().setAppend(capnp::Text::Reader(text.data(), text.size()));
    return harness_.Call(*client_, request, fds);
  }

  std::string Log() { return ReadWholeFile(path_); }

  TempDir dir_;
  std::string path_ = dir_.WriteFile("log", "");
  JournalHandler handler_{OpenJournal(path_)};
  LoopHarness harness_{handler_, JournalHandler::LoopOptions()};
  std::optional<wire::Channel> client_;
  int baseline_ = 0;
};

TEST_F(JournalServiceTest, RecordsCarryThePeerTheBrokerNamed) {
  // The text claims another identity; the record says who really sent it.
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, Append("{\"principal\":\"root\",\"uid\":0}"));
  EXPECT_EQ(reply.reader->getRoot<schema::Reply>().getAppended().getSeq(), 1u);
  EXPECT_THAT(Log(), HasSubstr("\"principal\":\"auditor\",\"uid\":1234,\"gid\":99,\"pid\":555,"
                               "\"text\":\"{\\\"principal\\\":\\\"root\\\""));
}

TEST_F(JournalServiceTest, BadRequestsGetErrorsWriteNothingAndLeakNothing) {
  auto code = [](const absl::StatusOr<wire::Incoming>& reply) {
    auto root = reply->reader->getRoot<schema::Reply>();
    return root.isError() ? root.getError().getCode() : 0u;
  };
  {
    // Refused by the kernel: the loop makes the connection refuse fds. On a
    // kernel that cannot, refused by the loop, which never even installs
    // them (connection_loop_test proves both).
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    absl::StatusOr<wire::Incoming> reply = Append("x", {r.get(), w.get()});
    if (testing::KernelCanRefuseFds()) {
      EXPECT_THAT(reply, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("refuses fds")));
    } else {
      EXPECT_EQ(code(reply), static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
      EXPECT_THAT(std::string(reply->reader->getRoot<schema::Reply>().getError().getMessage()),
                  HasSubstr("carry no fds"));
    }
  }
  EXPECT_EQ(code(Append("\xc0\xaf")), static_cast<uint32_t>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(code(Append(std::string(5000, 'x'))),
            static_cast<uint32_t>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Log(), "");
  // Well framed, but its root pointer points far outside the message.
  const uint8_t junk[16] = {0, 0, 0, 0, 1, 0, 0, 0, 0x90, 1, 0, 0, 1, 0, 0, 0};
  ASSERT_EQ(::capbroker::testing::RawSend(client_->fd(), junk), 0);
  ASSERT_OK(harness_.loop().Turn(-1).status());
  EXPECT_THAT(client_->Receive(), StatusIs(absl::StatusCode::kUnavailable));
  client_.reset();
  ASSERT_OK_AND_ASSIGN(wire::Channel again, harness_.Connect());
  client_.emplace(std::move(again));
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, Append("fine"));
  EXPECT_EQ(reply.reader->getRoot<schema::Reply>().getAppended().getSeq(), 1u);
  EXPECT_EQ(CountOpenFds(), baseline_);
}

TEST_F(JournalServiceTest, TheClientLibraryAndTheCli) {
  std::unique_ptr<ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ServingThread::Start(handler_, JournalHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  JournalClient journal(std::move(connection));
  ASSERT_OK_AND_ASSIGN(RecordId id, journal.Append("first"));
  EXPECT_EQ(id.seq, 1u);
  std::ostringstream out, err;
  EXPECT_EQ(RunJournalCli(journal, {"append", "backup", "done"}, out, err), kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("appended record 2 (run "));
  EXPECT_THAT(Log(), HasSubstr("\"text\":\"backup done\"}\n"));
  EXPECT_EQ(RunJournalCli(journal, {"append"}, out, err), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("usage"));
  EXPECT_EQ(RunJournalCli(journal, {"append", "\xff"}, out, err), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("not valid UTF-8"));
}

// A record is checked before anything is sent, as the journal checks it:
// one too large is told the rule, not that the request does not fit a
// datagram. The service here is gone, so a request that was sent would
// fail on the connection instead.
TEST(JournalClientTest, ChecksTheRecordBeforeSending) {
  ASSERT_OK_AND_ASSIGN(UniqueFd gone, capbroker::testing::ConnectionToAGoneService());
  JournalClient journal(std::move(gone));
  const std::string big(70000, 'x');
  EXPECT_THAT(journal.Append(big), StatusIs(absl::StatusCode::kResourceExhausted,
                                            "record of 70000 bytes; at most 4096"));
  EXPECT_THAT(journal.Append("ok \xff"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid UTF-8")));
  std::ostringstream out, err;
  EXPECT_EQ(RunJournalCli(journal, {"append", big}, out, err), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("record of 70000 bytes; at most 4096"));
  // What passes the checks is sent, and finds the service gone.
  EXPECT_THAT(journal.Append("fine"), StatusIs(absl::StatusCode::kUnavailable));
}

// Output that cannot be written (stdout a full disk) is a failure, not a
// silent success; the record was appended, and the error says so.
TEST_F(JournalServiceTest, TheCliFailsWhenItsOutputCannotBeWritten) {
  std::unique_ptr<ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ServingThread::Start(handler_, JournalHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  JournalClient journal(std::move(connection));
  testing::UndeliverableBuffer full;
  std::ostream out(&full);
  std::ostringstream err;
  EXPECT_EQ(RunJournalCli(journal, {"append", "lost", "id"}, out, err), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("journal_client: stdout: write failed (record 1 of run "));
  EXPECT_THAT(err.str(), HasSubstr(" was appended)\n"));
  EXPECT_THAT(Log(), HasSubstr("\"text\":\"lost id\"}\n"));
}

// A journal that never answers (the other end of the connection reads
// nothing): the call gives up at the client's timeout.
TEST(JournalClientTest, ACallPastTheTimeoutIsDeadlineExceeded) {
  ASSERT_OK_AND_ASSIGN(auto ends, wire::SeqpacketPair());
  JournalClient journal(std::move(ends.first), absl::Milliseconds(50));
  EXPECT_THAT(journal.Append("hello").status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("did not answer within 50ms")));
}

}  // namespace
}  // namespace capbroker::journal
