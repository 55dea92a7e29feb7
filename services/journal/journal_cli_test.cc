#include "services/journal/journal_cli.h"

#include <memory>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/error_reply.h"
#include "sdk/service/loop_harness.h"
#include "services/journal/journal.capnp.h"
#include "services/journal/journal_handler.h"

namespace capbroker::journal {
namespace {

using ::capbroker::testing::ServingThread;

// A compromised journal answers every request with an error holding
// terminal escape sequences.
class HostileJournal : public RequestHandler {
 public:
  absl::Status Handle(Exchange& x) override {
    SetErrorReply<schema::Reply>(x.reply,
                                 absl::ResourceExhaustedError("\x1b[2Jfull\nforged line"));
    return absl::OkStatus();
  }
};

TEST(JournalCliHostileTest, AnErrorFromTheServiceReachesTheTerminalEscaped) {
  HostileJournal handler;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingThread> serving,
                       ServingThread::Start(handler, JournalHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  JournalClient client(std::move(connection));
  std::ostringstream out, err;
  EXPECT_EQ(RunJournalCli(client, {"append", "hello"}, out, err), kExitError);
  EXPECT_EQ(err.str(), "journal_client: \\x1b[2Jfull\\x0aforged line\n");
  EXPECT_EQ(out.str(), "");
}

}  // namespace
}  // namespace capbroker::journal
