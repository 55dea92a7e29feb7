// Fds in flight: a grant's fd is sent into the client's socket at once, and
// stays there, an open file the broker made, until the client reads it, or
// for as long as the client keeps the socket, even after the broker has
// disconnected it. The kernel counts such fds against no limit of the
// client's (the sender, the broker, is root), so the broker bounds them
// itself with a small send buffer on every client connection: a client that
// asks and never reads gets at most 32 of them per connection. And a
// connection the broker disconnects keeps its place in its uid's count until
// the client has read them or closed it, so that a client that keeps every
// old socket and connects again holds no more.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/limits.h"
#include "tests/fixtures/broker_process.h"
#include "tests/hostile/hostile_fixture.h"

namespace capbroker::hostile {
namespace {

// Replies one client connection may have in flight, unread.
constexpr size_t kMaxInFlight = 32;

// --max-connections-per-uid of the tests that keep old sockets: the good
// client (the same uid) holds one place, so one raw connection at a time.
constexpr size_t kMaxConnectionsPerUid = 2;

// Connections a test that keeps old sockets makes, one after another: the
// broker's 32 grants in flight to each made 640 against a bound of 64.
constexpr int kReconnects = 20;

// Waits (an event, with a safety net) until the broker has hung up on or
// shut down `fd`, without reading from it.
bool WaitForHangUp(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, testing::kRawReplyTimeoutMs) == 1 &&
         (p.revents & (POLLHUP | POLLRDHUP)) != 0;
}

// What a connection that never read holds once the broker has hung up on
// it: every datagram still in its socket, and their fds.
struct Held {
  size_t replies = 0;
  size_t fds = 0;
};
Held Drain(int fd) {
  Held held;
  wire::ReceiveBuffer buffer;
  for (;;) {
    absl::StatusOr<std::optional<wire::Datagram>> datagram = wire::ReceiveDatagram(fd, buffer);
    if (!datagram.ok() || !datagram->has_value()) break;  // end of stream
    ++held.replies;
    held.fds += (*datagram)->fds.size();
  }
  return held;
}

// A client asks for grants and never reads the replies. The broker answers
// them in order; once its socket holds what the send buffer takes, replies
// wait in the broker's queue, and when 32 wait there the broker hangs up
// (the client's next send fails). What the client can pull out of its
// socket afterwards is bounded, whatever it sent: without the small send
// buffer it held 278 of these grants per connection.
TEST_F(HostileTest, AClientThatNeverReadsHoldsFewGrantsInFlight) {
  for (int connection = 0; connection < 3; ++connection) {
    SCOPED_TRACE(connection);
    UniqueFd fd = ConnectAndHello();
    uint64_t id = 1;
    int error = 0;
    for (int i = 0; i < 5000 && error == 0; ++i) {
      error = Send(fd.get(), AcquireBytes(++id, "motd"));
    }
    EXPECT_THAT(error, ::testing::AnyOf(EPIPE, ECONNRESET)) << "the broker never hung up";
    Held held = Drain(fd.get());
    RecordProperty(absl::StrCat("fds_in_flight_", connection), static_cast<int>(held.fds));
    EXPECT_GT(held.fds, 0u);
    EXPECT_EQ(held.fds, held.replies);  // every reply a grant
    EXPECT_LE(held.fds, kMaxInFlight) << "fds in flight to one connection";
  }
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

class KeptSocketsTest : public HostileTest {
 protected:
  void SetUp() override {
    testing::BrokerOptions options;
    options.extra_args = {"--max-connections-per-uid",
                          absl::StrCat(kMaxConnectionsPerUid)};
    StartBroker(std::move(options));
  }

  // Sends a hello on the raw connection `fd`, then up to `grants` requests
  // for "motd", unread, until a send fails; returns its errno, or 0.
  int HelloAndAsk(int fd, size_t grants) {
    int error = Send(fd, HelloBytes(1, schema::PROTOCOL_VERSION));
    for (uint64_t id = 2; id < 2 + grants && error == 0; ++id) {
      error = Send(fd, AcquireBytes(id, "motd"));
    }
    return error;
  }

  // After `kept` were made, each kept open, unread, until the broker hung
  // up on it: the fds they hold, within the bound of one connection's
  // in-flight grants for each place the uid may hold beside the good
  // client's. Then every place is free again once they are closed.
  void ExpectKeptSocketsHoldFewGrants(std::vector<UniqueFd>& kept) {
    // The last one was refused: the broker says why its uid is full.
    testing::RawReply refusal = Receive(kept.back().get());
    EXPECT_EQ(refusal.id, 0u);
    EXPECT_THAT(refusal.message, ::testing::HasSubstr("disconnected by the broker"));
    size_t fds = 0;
    for (UniqueFd& fd : kept) fds += Drain(fd.get()).fds;
    RecordProperty("fds_in_flight", static_cast<int>(fds));
    EXPECT_GT(fds, 0u);
    EXPECT_LE(fds, (kMaxConnectionsPerUid - 1) * kMaxInFlight)
        << "grant fds held unread in " << kept.size() << " sockets kept open";
    kept.clear();
    ExpectGoodClientWorks();  // a round trip: the broker has seen the closes
    ConnectAndHello();  // admitted, and closed at once
    ExpectFdsAtBaseline();
  }
};

// A client asks for grants on a connection until the broker hangs up on it
// (its queue full), keeps the socket, connects again and does the same.
// Each connection it keeps holds up to 32 grants in flight; the broker
// counts it against the uid until the client has read them or closed it.
TEST_F(KeptSocketsTest, AClientThatKeepsEachOldSocketHoldsNoMoreGrants) {
  std::vector<UniqueFd> kept;
  for (int connection = 0; connection < kReconnects; ++connection) {
    SCOPED_TRACE(connection);
    UniqueFd fd = Connect();
    EXPECT_THAT(HelloAndAsk(fd.get(), 5000), ::testing::AnyOf(EPIPE, ECONNRESET))
        << "the broker never hung up";
    kept.push_back(std::move(fd));
  }
  ExpectKeptSocketsHoldFewGrants(kept);
}

// The same with a client that sends 32 requests and then shuts its end
// down for writing (the broker reads end of stream and is done with the
// connection), waits for the broker to hang up, keeps the socket and
// connects again.
TEST_F(KeptSocketsTest, AClientThatShutsDownAfterItsRequestsHoldsNoMoreGrants) {
  std::vector<UniqueFd> kept;
  for (int connection = 0; connection < kReconnects; ++connection) {
    SCOPED_TRACE(connection);
    UniqueFd fd = Connect();
    (void)HelloAndAsk(fd.get(), kMaxInFlight);  // a refused one fails: kept all the same
    ASSERT_EQ(shutdown(fd.get(), SHUT_WR), 0) << std::strerror(errno);
    ASSERT_TRUE(WaitForHangUp(fd.get())) << "the broker never hung up";
    kept.push_back(std::move(fd));
  }
  ExpectKeptSocketsHoldFewGrants(kept);
}

// A connection the broker disconnected with grants in flight and whose
// client closes it unread gives its place back: the next connection of the
// uid is admitted.
TEST_F(KeptSocketsTest, ADisconnectedConnectionClosedUnreadGivesItsPlaceBack) {
  UniqueFd fd = Connect();
  EXPECT_THAT(HelloAndAsk(fd.get(), 5000), ::testing::AnyOf(EPIPE, ECONNRESET))
      << "the broker never hung up";
  EXPECT_GT(InQueue(fd.get()), 0u) << "nothing in flight: the test shows nothing";
  fd.reset();
  ExpectGoodClientWorks();  // a round trip: the broker has seen the close
  ConnectAndHello();        // admitted, and closed at once
  ExpectFdsAtBaseline();
}

// A reply larger than the small send buffer (a list of a large policy, up
// to the 64 KiB of a datagram) still goes out, one after another on one
// connection, and small replies follow it.
TEST(LargeReplyTest, ListLargerThanTheSendBufferIsDelivered) {
  std::string caps, grants;
  for (int i = 0; i < 14; ++i) {
    absl::StrAppend(&caps, i ? ", " : "", "( name = \"c", i, "\", file = ( path = \"/",
                    std::string(3990, 'a' + i), "\", access = read ) )");
    absl::StrAppend(&grants, i ? ", " : "", "\"c", i, "\"");
  }
  ASSERT_OK_AND_ASSIGN(
      auto broker,
      testing::BrokerProcess::Start(absl::StrCat(
          "( capabilities = [ ", caps, " ], principals = [ ( name = \"t\", match = ( uid = "
          "$UID ), grants = [ ", grants, " ] ) ] )")));
  ASSERT_OK_AND_ASSIGN(Client client, Client::Connect(broker->socket_path()));
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<CapabilityInfo> list, client.List());
    EXPECT_EQ(list.size(), 14u);
    ASSERT_OK(client.Status().status());
  }
}

}  // namespace
}  // namespace capbroker::hostile
