// Client against a fake broker in this process: finding the socket.
#include "sdk/client/client.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <thread>

#include "capnp/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/channel.h"
#include "sdk/wire/socket_path.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Answers the hello that opens every connection, as the broker does.
void AnswerHello(wire::Channel& broker) {
  ASSERT_OK_AND_ASSIGN(wire::Incoming hello, broker.Receive());
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<schema::Reply>();
  reply.setId(1);
  reply.initHello().setVersion(schema::PROTOCOL_VERSION);
  ASSERT_OK(broker.Send(message));
}

// Connect() with the environment of a user whose runtime dir is a fresh
// directory; the variables it reads are restored afterwards.
class ClientConnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* value = getenv(name);
      saved_.emplace_back(name, value == nullptr ? std::nullopt
                                                 : std::optional<std::string>(value));
      ASSERT_EQ(unsetenv(name), 0);
    }
    ASSERT_EQ(setenv("XDG_RUNTIME_DIR", runtime_.path().c_str(), 1), 0);
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        EXPECT_EQ(setenv(name, value->c_str(), 1), 0);
      } else {
        EXPECT_EQ(unsetenv(name), 0);
      }
    }
  }
  static constexpr const char* kVariables[] = {"CAPBROKER_SOCKET", "XDG_RUNTIME_DIR"};

  testing::TempDir runtime_;
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST_F(ClientConnectTest, FindsThePerUserBroker) {
  ASSERT_EQ(mkdir(runtime_.Join("capbroker").c_str(), 0700), 0);
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address,
                       wire::MakeUnixAddress(runtime_.Join("capbroker/broker.sock")));
  ASSERT_OK_AND_ASSIGN(UniqueFd listener,
                       TakeFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), "socket"));
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                 address.length),
            0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  // The hello is answered once it arrives: Connect blocks until then.
  std::thread broker([&] {
    absl::StatusOr<UniqueFd> accepted =
        TakeFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept4");
    ASSERT_OK(accepted);
    wire::Channel channel(std::move(accepted).value());
    AnswerHello(channel);
  });
  EXPECT_OK(Client::Connect());
  broker.join();
}

// Without a per-user broker, a client goes on to the system broker's socket,
// which serves every user; when that is missing too, the error names both.
TEST_F(ClientConnectTest, NoBrokerAnywhereIsUnavailableNamingEachPath) {
  if (access(wire::kSystemSocketPath, F_OK) == 0) {
    GTEST_SKIP() << "a system broker listens at " << wire::kSystemSocketPath;
  }
  EXPECT_THAT(Client::Connect(),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(runtime_.Join("capbroker/broker.sock")),
                             HasSubstr(wire::kSystemSocketPath))));
  // Nothing configured at all: still the system broker, and kUnavailable
  // (capctl's "broker unavailable"), not kNotFound ("no such capability").
  ASSERT_EQ(unsetenv("XDG_RUNTIME_DIR"), 0);
  EXPECT_THAT(Client::Connect(), StatusIs(absl::StatusCode::kUnavailable,
                                          HasSubstr(wire::kSystemSocketPath)));
}

}  // namespace
}  // namespace capbroker
