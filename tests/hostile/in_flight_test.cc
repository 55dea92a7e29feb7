// Fds in flight: a grant's fd is sent into the client's socket at once, and
// stays there, an open file the broker made, until the client reads it, or
// for as long as the client keeps the socket, even after the broker has
// disconnected it. The kernel counts such fds against no limit of the
// client's (the sender, the broker, is root), so the broker bounds them
// itself with a small send buffer on every client connection: a client that
// asks and never reads gets at most 32 of them per connection.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

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
