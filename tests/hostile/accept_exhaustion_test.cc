// The path a broker takes when accept() itself fails for lack of fds
// (EMFILE): it frees its reserve fd, accepts the waiting connection, tells
// it why and hangs up on it, and takes the reserve back; it keeps serving,
// and its fd count returns to where it was once the fds are free again.
//
// Reaching that path takes care. Connections alone never fill the table:
// admitting one needs two more fds for a moment (SO_PEERPIDFD, and the
// O_PATH open that verifies the peer's executable), so at two fds below the
// limit every new connection is accepted and then refused by the admission
// check (with an error reply saying the broker is out of fds), which frees
// its fd again. The last two fds are taken here by granted memfds that the
// broker must hold: the grants' replies wait in the queue of a client whose
// socket is full. Then a grant finds no fd for its memfd, and accept()
// none at all. Every step waits on an event: a reply, a hang-up, a round
// trip.
#include <poll.h>
#include <cerrno>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/client/client.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_baseline.h"
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

// How the broker took a new connection.
enum class Admission {
  kAdmitted,  // it answered the hello
  kRefused,   // it said why it refused the connection (an id-0 error)
  kHungUp,    // it hung up without a word
};

// Waits for the broker's first message on a new connection `fd`, or its
// hang-up; `why` gets a refusal's reason.
Admission Answered(int fd, std::string* why) {
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, kTimeoutMs), 1) << "no reply and no hang-up";
  wire::ReceiveBuffer buffer;
  absl::StatusOr<std::optional<wire::Datagram>> datagram = wire::ReceiveDatagram(fd, buffer);
  if (!datagram.ok() || !datagram->has_value()) return Admission::kHungUp;
  capnp::FlatArrayMessageReader reader((*datagram)->words, wire::ReaderLimits());
  auto reply = reader.getRoot<schema::Reply>();
  if (reply.isHello()) return Admission::kAdmitted;
  EXPECT_TRUE(reply.isError());
  EXPECT_EQ(reply.getId(), 0u);
  if (reply.isError()) *why = reply.getError().getMessage().cStr();
  // Then the hang-up, which comes once the broker has closed its end: only
  // then is its fd count down again.
  EXPECT_EQ(poll(&p, 1, kTimeoutMs), 1) << "no hang-up after the refusal";
  EXPECT_THAT(wire::ReceiveDatagram(fd, buffer),
              StatusIs(absl::StatusCode::kUnavailable));
  return Admission::kRefused;
}

// Sends hello on a new connection `fd` and waits for the broker's answer.
// The broker may have refused it before the hello was sent.
Admission Admitted(int fd, std::string* why) {
  int error = testing::RawSend(fd, HelloBytes(1, schema::PROTOCOL_VERSION));
  if (error != EPIPE && error != ECONNRESET) {
    EXPECT_EQ(error, 0);
  }
  return Answered(fd, why);
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
  std::string why;
  ASSERT_OK_AND_ASSIGN(UniqueFd hoarder, wire::ConnectSeqpacket(broker->socket_path()));
  ASSERT_EQ(Admitted(hoarder.get(), &why), Admission::kAdmitted);
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

  // 2. Connections until the broker refuses one, saying why: it is then
  // two fds below its limit (admission needs two more, for a moment).
  std::vector<UniqueFd> fillers;
  Admission last = Admission::kAdmitted;
  for (int i = 0; i < kBrokerFdLimit; ++i) {
    ASSERT_OK_AND_ASSIGN(UniqueFd c, wire::ConnectSeqpacket(broker->socket_path()));
    last = Admitted(c.get(), &why);
    if (last != Admission::kAdmitted) break;
    fillers.push_back(std::move(c));
  }
  ASSERT_LT(fillers.size(), static_cast<size_t>(kBrokerFdLimit)) << "never refused";
  EXPECT_EQ(last, Admission::kRefused);
  EXPECT_THAT(why, HasSubstr("out of fds"));
  EXPECT_EQ(broker->OpenFds(), kBrokerFdLimit - 2);
  EXPECT_THAT(broker->Stderr(), Not(HasSubstr("out of fds: refusing a connection")));

  // 3. Grants for the hoarder take the last two fds and keep them (their
  // replies wait in the broker's queue).
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(testing::RawSend(hoarder.get(), AcquireBytes(++id, "scratch")), 0);
    round_trip();
  }
  ASSERT_EQ(broker->OpenFds(), kBrokerFdLimit) << "the grants did not take the last fds";
  // A grant needs an fd the broker does not have now: the client is told
  // so (the call and why it failed), and the broker lives on, its count
  // unchanged.
  EXPECT_THAT(good.Acquire("scratch").status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("Too many open files")));
  round_trip();
  EXPECT_EQ(broker->OpenFds(), kBrokerFdLimit);

  // 4. Now accept() itself fails with EMFILE: the broker takes the
  // connection on its reserve fd, says why it refuses it, and hangs up.
  ASSERT_OK_AND_ASSIGN(UniqueFd refused, wire::ConnectSeqpacket(broker->socket_path()));
  why.clear();
  EXPECT_EQ(Admitted(refused.get(), &why), Admission::kRefused);
  EXPECT_THAT(why, HasSubstr("out of fds"));
  EXPECT_THAT(broker->Stderr(), HasSubstr("capbrokerd: out of fds: refusing a connection"));
  round_trip();  // it keeps serving
  EXPECT_EQ(broker->OpenFds(), kBrokerFdLimit) << "the reserve fd was not taken back";

  // 5. Free everything: the fd count returns to where it was (the reserve
  // included), and new clients are served.
  refused.reset();
  fillers.clear();
  hoarder.reset();
  testing::ExpectFdsAtBaseline(*broker, good, baseline_fds);  // the reserve included
  ASSERT_OK_AND_ASSIGN(Client fresh, Client::Connect(broker->socket_path()));
  ASSERT_OK(fresh.Acquire("scratch").status());
  ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace capbroker::hostile
