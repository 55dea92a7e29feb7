// When the kernel refuses to change what epoll watches on a connection
// (epoll_ctl(EPOLL_CTL_MOD) failing, as under memory pressure), the broker
// closes that connection and logs it, instead of going on with epoll
// watching the wrong events: a reply queued for a full socket would then
// wait forever, since EPOLLOUT never comes. The failure is injected with a
// seccomp filter (BrokerOptions::epoll_mod_errno).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_baseline.h"
#include "tests/fixtures/raw_send.h"
#include "tests/hostile/hostile_fixture.h"

namespace capbroker::hostile {
namespace {

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "t", match = ( uid = $UID ), grants = [ "scratch" ] ) ] )
)";

TEST(EpollFailureTest, ConnectionIsClosedWhenItsEventsCannotBeChanged) {
  testing::BrokerOptions options;
  options.epoll_mod_errno = ENOMEM;
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kPolicy, options));
  // A client that reads its replies never needs EPOLLOUT: unaffected.
  ASSERT_OK_AND_ASSIGN(Client good, Client::Connect(broker->socket_path()));
  int baseline_fds = broker->OpenFds();

  ASSERT_OK_AND_ASSIGN(UniqueFd bad, wire::ConnectSeqpacket(broker->socket_path()));
  ASSERT_EQ(testing::RawSend(bad.get(), HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  char buf[4096];
  ASSERT_GT(recv(bad.get(), buf, sizeof(buf), 0), 0);
  // Requests without reading, one at a time. Two round trips on the good
  // client after each: the broker has handled it and tried to send the
  // reply. The first reply that does not arrive waits in the broker's
  // queue, which needs EPOLLOUT: that change fails, and the broker must
  // hang up at once.
  uint64_t id = 1;
  size_t arrived = 0;
  bool queued = false;
  for (int i = 0; i < 100000 && !queued; ++i) {
    ASSERT_EQ(testing::RawSend(bad.get(), StatusBytes(++id)), 0);
    ASSERT_OK(good.Status().status());
    ASSERT_OK(good.Status().status());
    size_t now = InQueue(bad.get());
    queued = now == arrived;
    arrived = now;
    if (!queued) {
      ASSERT_FALSE(HungUp(bad.get())) << "hung up before a reply was queued";
    }
  }
  ASSERT_TRUE(queued) << "the socket never filled up";
  EXPECT_TRUE(HungUp(bad.get()))
      << "a reply waits for EPOLLOUT that epoll was never told to report";

  bad.reset();
  ASSERT_OK(good.Acquire("scratch").status());
  testing::ExpectFdsAtBaseline(*broker, good, baseline_fds);
}

}  // namespace
}  // namespace capbroker::hostile
