// The path a broker takes when accept() itself fails for lack of fds
// (EMFILE): it frees its reserve fd, accepts the waiting connection and
// hangs up on it, and takes the reserve back; it keeps serving, and its fd
// count returns to where it was once the fds are free again.
//
// Reaching that path takes care. Connections alone never fill the table:
// admitting one needs a second fd for a moment (SO_PEERPIDFD), so at one fd
// below the limit every new connection is accepted and then refused by the
// admission check, which frees its fd again. The last fd is taken here by a
// granted memfd that the broker must hold: the grant's reply waits in the
// queue of a client whose socket is full. Then accept() finds no fd at all.
// Every step waits on an event: a reply, a hang-up, a round trip.
#include <poll.h>
#include <cerrno>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/raw_send.h"
#include "tests/hostile/hostile_fixture.h"

namespace capbroker::hostile {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "t", match = ( uid = $UID ), grants = [ "scratch" ] ) ] )
)";

// Small enough to fill quickly, large enough for the broker's own fds.
constexpr int kBrokerFdLimit = 32;
// A safety net: the test fails instead of hanging on a broker that neither
// answers nor hangs up. Nothing waits for it when the broker is correct.
constexpr int kTimeoutMs = 20000;

// Waits for a reply (true) or a hang-up (false) on `fd`.
bool Answered(int fd) {
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, kTimeoutMs), 1) << "no reply and no hang-up";
  char buf[4096];
  return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0;
}

// Sends hello on a new connection `fd` and waits for the reply (true) or a
// hang-up (false). The broker may have hung up before the hello was sent.
bool Admitted(int fd) {
  int error = testing::RawSend(fd, HelloBytes(1, schema::PROTOCOL_VERSION));
  if (error == EPIPE || error == ECONNRESET) return false;
  EXPECT_EQ(error, 0);
  return Answered(fd);
}

TEST(AcceptExhaustionTest, RefusesWhatItCannotAcceptAndRecovers) {
  testing::BrokerOptions options;
  options.fd_limit = kBrokerFdLimit;
  options.capture_stderr = true;
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kPolicy, options));
  ASSERT_OK_AND_ASSIGN(Client good, Client::Connect(broker->socket_path()));
  int baseline_fds = broker->OpenFds();
  auto round_trip = [&] {
    ASSERT_OK(good.Status().status());
    ASSERT_OK(good.Status().status());
  };

  // 1. A client that does not read, with one reply queued in the broker:
  // every later reply to it waits in the broker too.
  ASSERT_OK_AND_ASSIGN(UniqueFd hoarder, wire::ConnectSeqpacket(broker->socket_path()));
  ASSERT_TRUE(Admitted(hoarder.get()));
  uint64_t id = 1;
  size_t arrived = 0;
  bool queued = false;
  for (int i = 0; i < 100000 && !queued; ++i) {
    ASSERT_EQ(testing::RawSend(hoarder.get(), StatusBytes(++id)), 0);
    round_trip();
    size_t now = InQueue(hoarder.get());
    queued = now == arrived;
    arrived = now;
  }
  ASSERT_TRUE(queued) << "the socket never filled up";

  // 2. Connections until the broker refuses one: it is then one fd below
  // its limit (admission needs one more, for a moment).
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < kBrokerFdLimit; ++i) {
    ASSERT_OK_AND_ASSIGN(UniqueFd c, wire::ConnectSeqpacket(broker->socket_path()));
    if (!Admitted(c.get())) break;
    fillers.push_back(std::move(c));
  }
  ASSERT_LT(fillers.size(), static_cast<size_t>(kBrokerFdLimit)) << "never refused";
  EXPECT_EQ(broker->OpenFds(), kBrokerFdLimit - 1);
  EXPECT_THAT(broker->Stderr(), Not(HasSubstr("out of fds: refusing a connection")));

  // 3. A grant for the hoarder takes the last fd and keeps it (its reply
  // waits in the broker's queue).
  ASSERT_EQ(testing::RawSend(hoarder.get(), AcquireBytes(++id, "scratch")), 0);
  round_trip();
  ASSERT_EQ(broker->OpenFds(), kBrokerFdLimit) << "the grant did not take the last fd";

  // 4. Now accept() itself fails with EMFILE: the broker takes the
  // connection on its reserve fd and hangs up at once.
  ASSERT_OK_AND_ASSIGN(UniqueFd refused, wire::ConnectSeqpacket(broker->socket_path()));
  EXPECT_FALSE(Admitted(refused.get())) << "expected a hang-up";
  EXPECT_THAT(broker->Stderr(), HasSubstr("capbrokerd: out of fds: refusing a connection"));
  round_trip();  // it keeps serving
  EXPECT_EQ(broker->OpenFds(), kBrokerFdLimit) << "the reserve fd was not taken back";

  // 5. Free everything: the fd count returns to where it was (the reserve
  // included), and new clients are served.
  refused.reset();
  fillers.clear();
  hoarder.reset();
  int fds = broker->OpenFds();
  for (int i = 0; i < 100 && fds != baseline_fds; ++i) {
    ASSERT_OK(good.Status().status());
    fds = broker->OpenFds();
  }
  EXPECT_EQ(fds, baseline_fds) << "the broker lost or leaked fds";
  ASSERT_OK_AND_ASSIGN(Client fresh, Client::Connect(broker->socket_path()));
  ASSERT_OK(fresh.Acquire("scratch").status());
  ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace capbroker::hostile
