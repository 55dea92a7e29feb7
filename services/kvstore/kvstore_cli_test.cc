#include "services/kvstore/kvstore_cli.h"

#include <memory>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/error_reply.h"
#include "sdk/service/loop_harness.h"
#include "services/kvstore/kvstore.capnp.h"
#include "services/kvstore/kvstore_handler.h"

namespace capbroker::kvstore {
namespace {

using ::capbroker::testing::ServingThread;

// A compromised kvstore answers what it likes: `get` with a value holding
// terminal escape sequences, anything else with an error saying one.
class HostileKvstore : public RequestHandler {
 public:
  absl::Status Handle(Exchange& x) override {
    auto reply = x.reply.initRoot<schema::Reply>();
    if (x.request.getRoot<schema::Request>().isGet()) {
      const std::string value = "\x1b[2J";
      reply.setValue(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(value.data()),
                                         value.size()));
    } else {
      SetError(reply.initError(), absl::InternalError("\x1b[2Jdisk\nforged line"));
    }
    return absl::OkStatus();
  }
};

class KvstoreCliHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(serving_, ServingThread::Start(handler_, KvstoreHandler::LoopOptions()));
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving_->Connect());
    client_ = std::make_unique<KvstoreClient>(std::move(connection));
  }

  HostileKvstore handler_;
  std::unique_ptr<ServingThread> serving_;
  std::unique_ptr<KvstoreClient> client_;
  std::ostringstream out_, err_;
};

TEST_F(KvstoreCliHostileTest, AnErrorFromTheServiceReachesTheTerminalEscaped) {
  EXPECT_EQ(RunKvstoreCli(*client_, {"put", "k", "v"}, out_, err_), kExitError);
  EXPECT_EQ(err_.str(), "kvstore_client: \\x1b[2Jdisk\\x0aforged line\n");
  EXPECT_EQ(out_.str(), "");
}

// A value is data: `get` writes its bytes as they are, for a pipe.
TEST_F(KvstoreCliHostileTest, AValueIsWrittenAsItIs) {
  EXPECT_EQ(RunKvstoreCli(*client_, {"get", "k"}, out_, err_), kExitOk);
  EXPECT_EQ(out_.str(), "\x1b[2J\n");
}

}  // namespace
}  // namespace capbroker::kvstore
