#include "services/scanner/scanner_cli.h"

#include <unistd.h>

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/error_reply.h"
#include "sdk/service/loop_harness.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "services/scanner/scanner_handler.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::scanner {
namespace {

using ::capbroker::testing::ServingThread;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

class ScannerCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(serving_, ServingThread::Start(handler_, ScannerHandler::LoopOptions()));
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving_->Connect());
    client_.emplace(std::move(connection));
  }

  int Run(const std::vector<std::string>& files) {
    out_.str("");
    err_.str("");
    return RunScannerCli(*client_, files, out_, err_);
  }

  TempDir dir_;
  ScannerHandler handler_{Scanner({{"Eicar-Test-Signature", testing::Eicar()}})};
  std::unique_ptr<ServingThread> serving_;
  std::optional<ScannerClient> client_;
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

// A scanner compromised by the file it scanned answers what it likes: a
// file that starts with 'i' "infected" with a name, any other an error,
// both holding terminal escape sequences (clear the screen; a newline that
// would forge a line of its own).
class HostileScanner : public RequestHandler {
 public:
  absl::Status Handle(Exchange& x) override {
    char first = 0;
    if (x.request_fds.empty() || pread(x.request_fds[0].get(), &first, 1, 0) != 1) first = 0;
    auto reply = x.reply.initRoot<schema::Reply>();
    if (first == 'i') {
      reply.setInfected("\x1b[2JEicar\nforged: clean");
    } else {
      SetError(reply.initError(), absl::FailedPreconditionError("\x1b]0;owned\x07 no"));
    }
    return absl::OkStatus();
  }
};

TEST(ScannerCliHostileTest, TextFromTheServiceReachesTheTerminalEscaped) {
  HostileScanner handler;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingThread> serving,
                       ServingThread::Start(handler, ScannerHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  ScannerClient client(std::move(connection));
  TempDir dir;
  const std::string infected = dir.WriteFile("infected", "i");
  const std::string failed = dir.WriteFile("failed", "f");
  std::ostringstream out, err;
  EXPECT_EQ(RunScannerCli(client, {infected, failed}, out, err), kExitInfected);
  EXPECT_EQ(out.str(), infected + ": infected (\\x1b[2JEicar\\x0aforged: clean)\n");
  EXPECT_EQ(err.str(), "scanner_client: " + failed + ": \\x1b]0;owned\\x07 no\n");
}

}  // namespace
}  // namespace capbroker::scanner
