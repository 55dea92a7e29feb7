#include "services/scanner/scanner_cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/error_reply.h"
#include "sdk/service/loop_harness.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "services/scanner/scanner_handler.h"
#include "tests/fixtures/gone_service.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/fixtures/undeliverable_stream.h"

namespace capbroker::scanner {
namespace {

using ::capbroker::testing::ServingThread;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

// A ScannerClient connected to handler(), served on a thread of its own.
class ServedScannerTest : public ::testing::Test {
 protected:
  virtual RequestHandler& handler() = 0;

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(serving_,
                         ServingThread::Start(handler(), ScannerHandler::LoopOptions()));
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving_->Connect());
    client_.emplace(std::move(connection));
  }

  TempDir dir_;
  std::unique_ptr<ServingThread> serving_;
  std::optional<ScannerClient> client_;
};

class ScannerCliTest : public ServedScannerTest {
 protected:
  RequestHandler& handler() override { return handler_; }

  int Run(const std::vector<std::string>& files) {
    out_.str("");
    err_.str("");
    return RunScannerCli(*client_, files, out_, err_);
  }

  ScannerHandler handler_{Scanner({{"Eicar-Test-Signature", testing::Eicar()}})};
  std::ostringstream out_, err_;
};

TEST_F(ScannerCliTest, PrintsOneLinePerFileAndExitsByTheWorst) {
  std::string clean = dir_.WriteFile("clean", "hello");
  std::string bad = dir_.WriteFile("bad", testing::Eicar());
  EXPECT_EQ(Run({clean}), kExitClean);
  EXPECT_EQ(out_.str(), clean + ": clean\n");
  EXPECT_EQ(Run({clean, bad}), kExitInfected);
  EXPECT_EQ(out_.str(), clean + ": clean\n" + bad + ": infected (Eicar-Test-Signature)\n");
  EXPECT_EQ(Run({clean, dir_.Join("missing")}), kExitError);
  EXPECT_THAT(err_.str(), HasSubstr("missing: No such file or directory"));
  EXPECT_EQ(Run({dir_.path()}), kExitError);
  EXPECT_THAT(err_.str(), HasSubstr("a directory, not a regular file"));
  EXPECT_EQ(Run({}), kExitError);
  EXPECT_THAT(err_.str(), HasSubstr("usage"));
}

// A file name may hold any byte but '/' and NUL: one that would clear the
// screen and forge a verdict line of its own reaches the terminal escaped,
// wherever the name is shown; a name in UTF-8 stays readable.
TEST_F(ScannerCliTest, FileNamesReachTheTerminalEscaped) {
  const std::string hostile = "x\x1b[2J\nmalware.exe: clean\nz";
  const std::string shown = dir_.path() + "/x\\x1b[2J\\x0amalware.exe: clean\\x0az";
  const std::string path = dir_.WriteFile(hostile, testing::Eicar());
  EXPECT_EQ(Run({path}), kExitInfected);
  EXPECT_EQ(out_.str(), shown + ": infected (Eicar-Test-Signature)\n");
  ASSERT_EQ(unlink(path.c_str()), 0);
  EXPECT_EQ(Run({path}), kExitError);
  EXPECT_EQ(err_.str(), "scanner_client: " + shown + ": No such file or directory\n");
  ASSERT_EQ(mkdir(path.c_str(), 0700), 0);
  EXPECT_EQ(Run({path}), kExitError);
  EXPECT_EQ(err_.str(), "scanner_client: " + shown +
                            ": file to scan: a directory, not a regular file\n");
  const std::string readable = dir_.WriteFile("caf\xc3\xa9-\xe4\xb8\xad.txt", "hello");
  EXPECT_EQ(Run({readable}), kExitClean);
  EXPECT_EQ(out_.str(), readable + ": clean\n");
}

// A FIFO with no writer: opening it must not wait for one (O_NONBLOCK),
// and the scanner refuses it as it refuses anything but a regular file.
// Without O_NONBLOCK the open blocks and the test runs into its timeout.
TEST_F(ScannerCliTest, AFifoIsRefusedWithoutWaitingForAWriter) {
  const std::string fifo = dir_.Join("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(Run({fifo}), kExitError);
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(err_.str(),
            "scanner_client: " + fifo + ": file to scan: a FIFO, not a regular file\n");
}

// Once the connection is gone, the files left are not tried, but each is
// named, so that none passes unnoticed.
TEST(ScannerCliLostTest, NamesEveryFileLeftWhenTheConnectionIsLost) {
  ASSERT_OK_AND_ASSIGN(UniqueFd gone, capbroker::testing::ConnectionToAGoneService());
  ScannerClient client(std::move(gone));
  TempDir dir;
  const std::string f1 = dir.WriteFile("f1", "hello");
  const std::string f2 = dir.WriteFile("f2\nforged", "hello");
  const std::string missing = dir.Join("missing");
  std::ostringstream out, err;
  EXPECT_EQ(RunScannerCli(client, {f1, f1, f2, missing}, out, err), kExitError);
  EXPECT_EQ(out.str(), "");
  std::vector<std::string> lines = absl::StrSplit(err.str(), '\n');
  ASSERT_EQ(lines.size(), 5u) << err.str();  // the last one empty
  EXPECT_THAT(lines[0], ::testing::StartsWith("scanner_client: " + f1 + ": "));
  const std::string lost = ": not scanned (connection to the scanner lost)";
  EXPECT_EQ(lines[1], "scanner_client: " + f1 + lost);
  EXPECT_EQ(lines[2], "scanner_client: " + dir.path() + "/f2\\x0aforged" + lost);
  EXPECT_EQ(lines[3], "scanner_client: " + missing + lost);
  EXPECT_EQ(lines[4], "");
}

TEST_F(ScannerCliTest, AFailedWriteOfTheVerdictsIsAnError) {
  const std::string clean = dir_.WriteFile("clean", "hello");
  const std::string bad = dir_.WriteFile("bad", testing::Eicar());
  capbroker::testing::UndeliverableBuffer failing;
  std::ostream out(&failing);
  std::ostringstream err;
  EXPECT_EQ(RunScannerCli(*client_, {clean}, out, err), kExitError);
  EXPECT_EQ(err.str(), "scanner_client: stdout: write failed; verdicts were lost\n");
  // Infected still says so: the scan found it, whatever became of the line.
  out.clear();
  err.str("");
  EXPECT_EQ(RunScannerCli(*client_, {bad}, out, err), kExitInfected);
  EXPECT_THAT(err.str(), HasSubstr("stdout: write failed"));
}

// A scanner compromised by the file it scanned answers what it likes: a
// file that starts with 'i' "infected" with a name, any other an error,
// both holding terminal escape sequences (clear the screen; a newline that
// would forge a line of its own). A file that starts with 'u' gets what an
// honest scanner answers when a read of the file fails with EAGAIN: an
// error of code unavailable, the connection still open.
class HostileScanner : public RequestHandler {
 public:
  absl::Status Handle(Exchange& x) override {
    char first = 0;
    if (x.request_fds.empty() || pread(x.request_fds[0].get(), &first, 1, 0) != 1) first = 0;
    auto reply = x.reply.initRoot<schema::Reply>();
    if (first == 'i') {
      reply.setInfected("\x1b[2JEicar\nforged: clean");
    } else if (first == 'u') {
      SetError(reply.initError(),
               absl::UnavailableError("pread(file to scan, offset 0): Resource temporarily "
                                      "unavailable"));
    } else {
      SetError(reply.initError(), absl::FailedPreconditionError("\x1b]0;owned\x07 no"));
    }
    return absl::OkStatus();
  }
};

class ScannerCliHostileTest : public ServedScannerTest {
 protected:
  RequestHandler& handler() override { return handler_; }
  HostileScanner handler_;
};

TEST_F(ScannerCliHostileTest, TextFromTheServiceReachesTheTerminalEscaped) {
  const std::string infected = dir_.WriteFile("infected", "i");
  const std::string failed = dir_.WriteFile("failed", "f");
  std::ostringstream out, err;
  EXPECT_EQ(RunScannerCli(*client_, {infected, failed}, out, err), kExitInfected);
  EXPECT_EQ(out.str(), infected + ": infected (\\x1b[2JEicar\\x0aforged: clean)\n");
  EXPECT_EQ(err.str(), "scanner_client: " + failed + ": \\x1b]0;owned\\x07 no\n");
}

// An error reply of code unavailable is about that file: the connection is
// not lost, and the next file is still scanned.
TEST_F(ScannerCliHostileTest, AnErrorReplyOfCodeUnavailableIsNotALostConnection) {
  const std::string unreadable = dir_.WriteFile("unreadable", "u");
  const std::string infected = dir_.WriteFile("infected", "i");
  std::ostringstream out, err;
  EXPECT_EQ(RunScannerCli(*client_, {unreadable, infected}, out, err), kExitInfected);
  EXPECT_EQ(err.str(), "scanner_client: " + unreadable +
                           ": pread(file to scan, offset 0): Resource temporarily unavailable\n");
  EXPECT_THAT(out.str(), ::testing::StartsWith(infected + ": infected ("));
  EXPECT_TRUE(client_->connected());
}

}  // namespace
}  // namespace capbroker::scanner
