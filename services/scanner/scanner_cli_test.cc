#include "services/scanner/scanner_cli.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/loop_harness.h"
#include "services/scanner/eicar.h"
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

}  // namespace
}  // namespace capbroker::scanner
