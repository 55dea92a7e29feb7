// A broker out of fds refuses what it cannot do and keeps serving: EMFILE
// never kills it (a known broker died on EMFILE from SO_PEERPIDFD).
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/broker_process.h"

namespace capbroker {
namespace {

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "t", match = ( uid = $UID ), grants = [ "scratch" ] ) ] )
)";

// Small enough to exhaust quickly, large enough for the broker's own fds.
constexpr int kBrokerFdLimit = 32;

TEST(FdExhaustionTest, BrokerKeepsServingWhenOutOfFds) {
  ASSERT_OK_AND_ASSIGN(auto broker,
                       testing::BrokerProcess::Start(kPolicy, {}, kBrokerFdLimit));
  // Fill the broker's fd table with connections that completed a hello.
  std::vector<Client> clients;
  int refused = 0;
  for (int i = 0; i < 2 * kBrokerFdLimit; ++i) {
    absl::StatusOr<Client> client = Client::Connect(broker->socket_path());
    if (client.ok()) {
      clients.push_back(std::move(*client));
    } else {
      ++refused;  // the broker hung up: it could not take this one
    }
  }
  EXPECT_GT(refused, 0) << "the fd limit was never reached";
  EXPECT_LT(clients.size(), static_cast<size_t>(kBrokerFdLimit));
  // Admission refuses connections two fds short of the limit (taking one
  // needs two more fds for a moment), so the clients it took are still
  // served: a grant's memfd fits. (A grant at a table that is full is
  // tested in tests/hostile/accept_exhaustion_test.cc.)
  ASSERT_OK_AND_ASSIGN(Capability grant, clients.back().Acquire("scratch"));
  EXPECT_EQ(grant.size, 4096u);
  // Free some fds: everything works again.
  clients.erase(clients.begin() + static_cast<long>(clients.size() / 2), clients.end());
  ASSERT_OK_AND_ASSIGN(Client fresh, Client::Connect(broker->socket_path()));
  ASSERT_OK_AND_ASSIGN(Capability scratch, fresh.Acquire("scratch"));
  EXPECT_EQ(scratch.size, 4096u);
  ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace capbroker
