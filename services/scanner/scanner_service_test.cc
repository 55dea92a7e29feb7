// The scanner's serving code in one process: ScannerHandler on a
// ConnectionLoop over socketpairs, driven by a client and by hostile
// datagrams.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/loop_harness.h"
#include "sdk/wire/unix_socket.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "services/scanner/scanner_client.h"
#include "services/scanner/scanner_handler.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::scanner {
namespace {

using ::capbroker::testing::CountOpenFds;
using ::capbroker::testing::LoopHarness;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

class ScannerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(harness_.Start());
    ASSERT_OK_AND_ASSIGN(client_, harness_.Connect());
    baseline_ = CountOpenFds();
  }

  // Sends a scan request with `fds` and returns the reply's error status,
  // or OK with the verdict in `verdict`.
  absl::Status Scan(absl::Span<const int> fds, std::string* verdict = nullptr) {
    capnp::MallocMessageBuilder request;
    request.initRoot<schema::Request>().setScan();
    CB_ASSIGN_OR_RETURN(wire::Incoming reply, harness_.Call(*client_, request, fds));
    auto root = reply.reader->getRoot<schema::Reply>();
    if (root.isError()) {
      return absl::Status(static_cast<absl::StatusCode>(root.getError().getCode()),
                          root.getError().getMessage().cStr());
    }
    if (verdict != nullptr) *verdict = root.isClean() ? "clean" : root.getInfected().cStr();
    return absl::OkStatus();
  }

  UniqueFd Open(absl::string_view content) {
    return UniqueFd(open(dir_.WriteFile("f", content).c_str(), O_RDONLY | O_CLOEXEC));
  }

  TempDir dir_;
  ScannerHandler handler_{Scanner({{"Eicar-Test-Signature", testing::Eicar()}})};
  LoopHarness harness_{handler_, ScannerHandler::LoopOptions()};
  std::optional<wire::Channel> client_;
  int baseline_ = 0;
};

TEST_F(ScannerServiceTest, ScansTheFileHandedOver) {
  std::string verdict;
  ASSERT_OK(Scan({Open("x" + testing::Eicar()).get()}, &verdict));
  EXPECT_EQ(verdict, "Eicar-Test-Signature");
  ASSERT_OK(Scan({Open("harmless").get()}, &verdict));
  EXPECT_EQ(verdict, "clean");
  EXPECT_EQ(CountOpenFds(), baseline_);
}

TEST_F(ScannerServiceTest, WrongFdCountsGetAClearError) {
  EXPECT_THAT(Scan({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("scan takes 1 fd with the request; it came with 0")));
  UniqueFd a = Open("a");
  // More than a scan takes is refused by the loop, before the handler.
  EXPECT_THAT(Scan({a.get(), a.get(), a.get()}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at most 1 fds; this one came with 3")));
  capnp::MallocMessageBuilder request;
  request.initRoot<schema::Request>().setInfo();
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness_.Call(*client_, request, {a.get()}));
  EXPECT_TRUE(reply.reader->getRoot<schema::Reply>().isError());
  a.reset();
  EXPECT_EQ(CountOpenFds(), baseline_);
}

TEST_F(ScannerServiceTest, AFifoADirectoryOrASocketIsRefusedAndServingGoesOn) {
  ASSERT_EQ(mkfifo(dir_.Join("fifo").c_str(), 0600), 0);
  {
    UniqueFd fifo(open(dir_.Join("fifo").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    EXPECT_THAT(Scan({fifo.get()}),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a FIFO")));
    UniqueFd dir(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    EXPECT_THAT(Scan({dir.get()}),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a directory")));
    EXPECT_THAT(Scan({client_->fd()}),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a socket")));
  }
  std::string verdict;
  ASSERT_OK(Scan({Open(testing::Eicar()).get()}, &verdict));
  EXPECT_EQ(verdict, "Eicar-Test-Signature");
  EXPECT_EQ(CountOpenFds(), baseline_);
}

TEST_F(ScannerServiceTest, GarbageClosesTheConnectionOthersAreServed) {
  ASSERT_OK_AND_ASSIGN(wire::Channel other, harness_.Connect());
  const int before = CountOpenFds();
  UniqueFd file = Open("payload");
  const uint8_t junk[16] = {7, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
  ASSERT_EQ(::capbroker::testing::RawSend(client_->fd(), junk, {file.get()}), 0);
  ASSERT_OK(harness_.loop().Turn(-1).status());
  EXPECT_THAT(client_->Receive(), StatusIs(absl::StatusCode::kUnavailable));
  client_.reset();
  file.reset();
  EXPECT_EQ(harness_.loop().connection_count(), 1u);
  EXPECT_EQ(CountOpenFds(), before - 2);  // both ends of the closed connection
  capnp::MallocMessageBuilder request;
  request.initRoot<schema::Request>().setInfo();
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness_.Call(other, request));
  EXPECT_EQ(reply.reader->getRoot<schema::Reply>().getInfo().getSignatures(), 1u);
}

TEST_F(ScannerServiceTest, TheClientLibraryKeepsTheServiceCodes) {
  // ScannerClient blocks on its reply, so it runs against a loop thread.
  std::unique_ptr<::capbroker::testing::ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ::capbroker::testing::ServingThread::Start(
                                handler_, ScannerHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  ScannerClient scanner(std::move(connection));
  ASSERT_OK_AND_ASSIGN(Verdict v, scanner.Scan(Open(testing::Eicar()).get()));
  EXPECT_EQ(v.signature, "Eicar-Test-Signature");
  EXPECT_EQ(v.bytes_scanned, 68u);
  UniqueFd dir(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_THAT(scanner.Scan(dir.get()), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(ScannerInfo info, scanner.Info());
  EXPECT_EQ(info.signatures, 1u);
}

// A connection the scanner refuses (too many of the uid's at once) gets the
// reason as an error reply and is closed, possibly before the client has
// sent anything: the client library reads that reply even though its
// request can no longer be sent.
TEST(ScannerRefusalTest, TheClientReadsWhyItsConnectionWasRefused) {
  int ends[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends), 0);
  UniqueFd client_end(ends[0]);
  {
    wire::Channel service(UniqueFd{ends[1]});
    capnp::MallocMessageBuilder reply;
    ScannerHandler(Scanner({})).SetRefusal(
        absl::ResourceExhaustedError("at most 4 connections of uid 1000 at once"), reply);
    ASSERT_OK(service.Send(reply));
  }
  ScannerClient scanner(std::move(client_end));
  EXPECT_THAT(scanner.Info().status(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("at most 4 connections of uid 1000")));
}

// A scanner that never answers (the other end of the connection reads
// nothing): each call gives up at the client's timeout.
TEST(ScannerClientTest, ACallPastTheTimeoutIsDeadlineExceeded) {
  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_GE(file.get(), 0);
  const std::vector<std::function<absl::Status(ScannerClient&)>> calls = {
      [&](ScannerClient& scanner) { return scanner.Scan(file.get()).status(); },
      [](ScannerClient& scanner) { return scanner.Info().status(); },
  };
  for (size_t i = 0; i < calls.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto ends, wire::SeqpacketPair());
    ScannerClient scanner(std::move(ends.first), absl::Milliseconds(50));
    EXPECT_THAT(calls[i](scanner), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                            HasSubstr("did not answer within 50ms")))
        << "call " << i;
  }
}

}  // namespace
}  // namespace capbroker::scanner
