#include "sdk/service/connection_loop.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/service/fake_broker.h"
#include "sdk/service/fd_room.h"
#include "sdk/service/loop_harness.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/fuse_file.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::capbroker::testing::CountOpenFds;
using ::capbroker::testing::FakeBroker;
using ::capbroker::testing::LoopHarness;

// Borrows the broker's message types for a toy protocol: a Request's id
// comes back in a Reply, whose fds list counts the fds the request
// carried and whose error message names the peer. Id 666 is "a message
// this handler cannot read"; id 7 asks for a pipe's read end in the reply,
// id 17 for more fds than a datagram carries (a service's bug). A refused
// request gets a Reply whose error says why.
class EchoHandler : public RequestHandler {
 public:
  bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) override {
    ++refused;
    last_refusal = refusal.code();
    reply.initRoot<schema::Reply>().initError().setMessage(std::string(refusal.message()));
    return true;
  }

  absl::Status Handle(Exchange& x) override {
    auto request = x.request.getRoot<schema::Request>();
    ++handled;
    if (request.getId() == 666) return absl::InvalidArgumentError("unreadable");
    auto reply = x.reply.initRoot<schema::Reply>();
    reply.setId(request.getId());
    reply.initFds(x.request_fds.size());
    reply.initError().setMessage(x.peer.principal + ":" + std::to_string(x.peer.uid));
    if (request.getId() == 7) {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
      x.reply_fds.emplace_back(p[0]);
      close(p[1]);
    }
    if (request.getId() == 17) {
      for (size_t i = 0; i <= wire::kMaxFdsPerMessage; ++i) {
        UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!null) return absl::InternalError("open /dev/null");
        x.reply_fds.push_back(std::move(null));
      }
    }
    return absl::OkStatus();
  }
  int handled = 0;
  int refused = 0;
  absl::StatusCode last_refusal = absl::StatusCode::kOk;
};

// A protocol without error replies: a refused request closes the connection.
class PlainHandler : public RequestHandler {
 public:
  absl::Status Handle(Exchange& x) override {
    x.reply.initRoot<schema::Reply>().setId(x.request.getRoot<schema::Request>().getId());
    return absl::OkStatus();
  }
};

capnp::MallocMessageBuilder& Request(capnp::MallocMessageBuilder& message, uint64_t id) {
  message.initRoot<schema::Request>().setId(id);
  return message;
}

std::string ReplyError(wire::Incoming& incoming) {
  std::string message;
  EXPECT_OK(CatchKj("reply", [&] {
    message = incoming.reader->getRoot<schema::Reply>().getError().getMessage();
    return absl::OkStatus();
  }));
  return message;
}

uint64_t ReplyId(wire::Incoming& incoming) {
  uint64_t id = 0;
  EXPECT_OK(CatchKj("reply", [&] {
    id = incoming.reader->getRoot<schema::Reply>().getId();
    return absl::OkStatus();
  }));
  return id;
}

// Makes a connection and sends `request` with `fds` (borrowed) on it
// before the loop has taken it, then lets the loop take it and serve the
// request: fds that reached a service's socket before the loop could make
// it refuse them (ConnectionLoop::Add), as every fd a client sends does on
// a kernel that cannot refuse them. The reply waits in the channel.
absl::StatusOr<wire::Channel> SendBeforeAccept(LoopHarness& harness,
                                               capnp::MessageBuilder& request,
                                               absl::Span<const int> fds) {
  absl::StatusOr<UniqueFd> end = harness.broker().Connect(LoopHarness::DefaultPeer());
  if (!end.ok()) return end.status();
  wire::Channel client(std::move(end).value());
  if (absl::Status sent = client.Send(request, fds); !sent.ok()) return sent;
  absl::StatusOr<bool> serving = harness.loop().Turn(-1);  // takes the connection
  if (!serving.ok()) return serving.status();
  if (absl::Status turned = harness.TurnNow(); !turned.ok()) return turned;  // serves it
  return client;
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

class ConnectionLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_ = CountOpenFds();
    ASSERT_OK(harness_.Start());
  }

  EchoHandler handler_;
  // The echo protocol takes fds (its reply counts them): as many as the
  // wire allows.
  LoopHarness harness_{handler_,
                       ConnectionLoop::Options{.max_request_fds = wire::kMaxFdsPerMessage}};
  int baseline_ = 0;
};

TEST_F(ConnectionLoopTest, AnswersWithThePeerTheBrokerNamed) {
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect(Peer{"alice", 1001, 1001, 9}));
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness_.Call(client, Request(request, 42)));
  EXPECT_EQ(ReplyId(reply), 42u);
  EXPECT_EQ(std::string(reply.reader->getRoot<schema::Reply>().getError().getMessage()),
            "alice:1001");
  EXPECT_EQ(harness_.loop().connection_count(), 1u);
}

TEST_F(ConnectionLoopTest, ClosesAConnectionTheClientClosed) {
  {
    ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect());
    EXPECT_EQ(harness_.loop().connection_count(), 1u);
  }
  ASSERT_OK_AND_ASSIGN(bool serving, harness_.loop().Turn(-1));
  EXPECT_TRUE(serving);
  EXPECT_EQ(harness_.loop().connection_count(), 0u);
}

TEST(ConnectionLoopReadyTest, TakesConnectionsQueuedWhileSayingReady) {
  // Events that come while the Client waits for a reply (here its ready's,
  // as brokers once sent them) are queued there: the fd shows nothing.
  EchoHandler handler;
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  ASSERT_OK_AND_ASSIGN(UniqueFd end, broker.Connect(LoopHarness::DefaultPeer()));
  ASSERT_OK(broker.AnswerReady());
  ASSERT_OK(broker.client().Ready());
  ConnectionLoop loop(broker.client(), handler);
  ASSERT_OK_AND_ASSIGN(bool serving, loop.Turn(0));
  EXPECT_TRUE(serving);
  EXPECT_EQ(loop.connection_count(), 1u);
}

// A handler that calls the broker for each request (as one that acquires
// a capability per request would), while the broker makes a connection for
// another client: the call reads that event ahead of its reply, into the
// Client's queue, and the broker fd shows nothing more.
class BrokerCallingHandler : public RequestHandler {
 public:
  explicit BrokerCallingHandler(FakeBroker& broker) : broker_(broker) {}

  absl::Status Handle(Exchange& x) override {
    absl::StatusOr<std::vector<UniqueFd>> ends = broker_.ConnectDuringACall(1, 64);
    if (!ends.ok()) return ends.status();
    for (UniqueFd& end : *ends) made.push_back(std::move(end));
    x.reply.initRoot<schema::Reply>().setId(x.request.getRoot<schema::Request>().getId());
    return absl::OkStatus();
  }
  std::vector<UniqueFd> made;  // the clients' ends of the connections

 private:
  FakeBroker& broker_;
};

// A handler whose call to the broker finds it gone (the Client closes its
// end, which takes it out of the loop's epoll set).
class BrokerLosingHandler : public RequestHandler {
 public:
  explicit BrokerLosingHandler(FakeBroker& broker) : broker_(broker) {}

  absl::Status Handle(Exchange& x) override {
    broker_.Close();
    call = broker_.client().Ready();
    x.reply.initRoot<schema::Reply>().setId(x.request.getRoot<schema::Request>().getId());
    return absl::OkStatus();
  }
  absl::Status call;

 private:
  FakeBroker& broker_;
};

// The loop ends once a handler's call has closed the broker connection,
// rather than wait for connects that can no longer come.
TEST(ConnectionLoopBrokerCallTest, EndsOnceAHandlersCallClosedTheBrokerConnection) {
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  ASSERT_OK(broker.AnswerReady());
  ASSERT_OK(broker.client().Ready());
  BrokerLosingHandler handler(broker);
  ConnectionLoop loop(broker.client(), handler);
  ASSERT_OK_AND_ASSIGN(UniqueFd end, broker.Connect(LoopHarness::DefaultPeer()));
  ASSERT_OK_AND_ASSIGN(bool serving, loop.Turn(-1));  // takes the connection
  ASSERT_TRUE(serving);
  wire::Channel client(std::move(end));
  capnp::MallocMessageBuilder request;
  ASSERT_OK(client.Send(Request(request, 1)));
  ASSERT_OK_AND_ASSIGN(serving, loop.Turn(-1));  // serves it: the call fails
  ASSERT_TRUE(absl::IsUnavailable(handler.call)) << handler.call;
  ASSERT_EQ(broker.client().fd(), -1);
  // The timeout is a liveness bound (the old loop waited it out, and for
  // ever in Run), not a speed check.
  ASSERT_OK_AND_ASSIGN(serving, loop.Turn(10'000));
  EXPECT_FALSE(serving);
}

TEST(ConnectionLoopBrokerCallTest, ServesConnectionsQueuedDuringAHandlersBrokerCall) {
  ASSERT_OK_AND_ASSIGN(FakeBroker broker, FakeBroker::Create());
  ASSERT_OK(broker.AnswerReady());
  ASSERT_OK(broker.client().Ready());
  BrokerCallingHandler handler(broker);
  ConnectionLoop loop(broker.client(), handler);
  ASSERT_OK_AND_ASSIGN(UniqueFd end, broker.Connect(LoopHarness::DefaultPeer()));
  ASSERT_OK_AND_ASSIGN(bool serving, loop.Turn(-1));  // takes the connection
  ASSERT_TRUE(serving);
  ASSERT_EQ(loop.connection_count(), 1u);
  wire::Channel first(std::move(end));
  capnp::MallocMessageBuilder request;
  ASSERT_OK(first.Send(Request(request, 1)));
  ASSERT_OK_AND_ASSIGN(serving, loop.Turn(-1));  // serves it: the handler calls
  ASSERT_TRUE(serving);
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, first.Receive());
  EXPECT_EQ(ReplyId(reply), 1u);
  ASSERT_EQ(handler.made.size(), 1u);
  ASSERT_EQ(broker.client().queued_incoming(), 1u);
  // Nothing more comes from the broker: the next turn takes the queued
  // connection without waiting for it. The timeout is a liveness bound
  // (the old loop waited it out, and for ever in Run), not a speed check.
  ASSERT_OK_AND_ASSIGN(serving, loop.Turn(10'000));
  ASSERT_TRUE(serving);
  ASSERT_EQ(loop.connection_count(), 2u);
  EXPECT_EQ(broker.client().queued_incoming(), 0u);
  // And it serves it (its handler calls the broker in turn).
  wire::Channel second(std::move(handler.made[0]));
  ASSERT_OK(second.Send(Request(request, 2)));
  ASSERT_OK_AND_ASSIGN(serving, loop.Turn(10'000));
  ASSERT_TRUE(serving);
  ASSERT_OK_AND_ASSIGN(reply, second.Receive());
  EXPECT_EQ(ReplyId(reply), 2u);
}

TEST_F(ConnectionLoopTest, GarbageClosesThatConnectionOnlyAndLeaksNothing) {
  ASSERT_OK_AND_ASSIGN(wire::Channel good, harness_.Connect());
  {
    ASSERT_OK_AND_ASSIGN(wire::Channel bad, harness_.Connect());
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    ASSERT_EQ(testing::RawSend(bad.fd(), junk, {r.get(), w.get()}), 0);
    ASSERT_OK(harness_.loop().Turn(-1).status());
    EXPECT_EQ(harness_.loop().connection_count(), 1u);
    EXPECT_THAT(bad.Receive(), StatusIs(absl::StatusCode::kUnavailable));
  }
  // An empty datagram, and one that is not whole words, end theirs too.
  for (size_t size : {0, 5}) {
    ASSERT_OK_AND_ASSIGN(wire::Channel bad, harness_.Connect());
    const uint8_t bytes[5] = {};
    ASSERT_EQ(testing::RawSend(bad.fd(), absl::MakeConstSpan(bytes, size)), 0);
    ASSERT_OK(harness_.loop().Turn(-1).status());
    EXPECT_THAT(bad.Receive(), StatusIs(absl::StatusCode::kUnavailable));
  }
  // A request with more fds than a receive has room for (MSG_CTRUNC: the
  // kernel closed the rest) and a datagram longer than the loop reads
  // (MSG_TRUNC: the rest is lost), each with fds: the message and its fds
  // can no longer be matched, so the connection ends, and what came is
  // closed. The first is a readable request, the second one padded.
  {
    capnp::MallocMessageBuilder message;
    ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> words, wire::Flatten(Request(message, 6)));
    const kj::ArrayPtr<const kj::byte> request = words.asBytes();
    std::vector<uint8_t> padded(request.begin(), request.end());
    padded.resize(wire::kMaxMessageBytes + 8, 0);
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    const struct {
      std::vector<uint8_t> bytes;
      size_t fds;
    } cuts[] = {{std::vector<uint8_t>(request.begin(), request.end()), wire::kMaxFdsPerMessage + 1},
                {padded, 2}};
    for (const auto& cut : cuts) {
      SCOPED_TRACE(cut.fds);
      ASSERT_OK_AND_ASSIGN(wire::Channel bad, harness_.Connect());
      ASSERT_EQ(testing::RawSend(bad.fd(), cut.bytes, std::vector<int>(cut.fds, r.get())), 0);
      ASSERT_OK(harness_.loop().Turn(-1).status());
      // The good connection only: an open one would leave the receive below
      // waiting.
      ASSERT_EQ(harness_.loop().connection_count(), 1u);
      EXPECT_THAT(bad.Receive(), StatusIs(absl::StatusCode::kUnavailable));
    }
  }
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness_.Call(good, Request(request, 5)));
  EXPECT_EQ(ReplyId(reply), 5u);
  // The service side holds: the epoll fd, the good connection, and the two
  // ends of the fake broker's socketpair; the test holds the client's end.
  EXPECT_EQ(CountOpenFds(), baseline_ + 5);
}

// A loop serving one connection, a ForkingServer's worker, logs nothing
// for what its client sends: each worker would have a log budget of its
// own, and a client can open connection after connection. Nor for a reply
// it could not send (a client can cause the kernel's ETOOMANYREFS; the
// service's bug of a reply with too many fds takes the same way). It says
// why in client_fault() instead.
TEST(ConnectionLoopWorkerTest, ServingOneConnectionItLogsNothingItsClientCauses) {
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
  capnp::MallocMessageBuilder unreadable, asking_for_an_fd, asking_for_too_many;
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> unreadable_words,
                       wire::Flatten(Request(unreadable, 666)));
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> asking_words,
                       wire::Flatten(Request(asking_for_an_fd, 7)));
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> too_many_words,
                       wire::Flatten(Request(asking_for_too_many, 17)));
  const struct {
    ClientFault kind;
    absl::Span<const uint8_t> sent;
    bool refuses_fds;  // the client's socket refuses fds (SO_PASSRIGHTS off)
    absl::StatusCode code;
    const char* why;
  } cases[] = {
      {ClientFault::kNotAMessage, junk, false, absl::StatusCode::kInvalidArgument,
       "not a message"},
      {ClientFault::kHandler,
       absl::MakeConstSpan(unreadable_words.asBytes().begin(), unreadable_words.asBytes().size()),
       false, absl::StatusCode::kInvalidArgument, "unreadable"},
      {ClientFault::kRefusesReplyFds,
       absl::MakeConstSpan(asking_words.asBytes().begin(), asking_words.asBytes().size()), true,
       absl::StatusCode::kPermissionDenied,
       "the client's socket refuses the fds of its reply (SO_PASSRIGHTS off)"},
      {ClientFault::kReplyNotSent,
       absl::MakeConstSpan(too_many_words.asBytes().begin(), too_many_words.asBytes().size()),
       false, absl::StatusCode::kInvalidArgument,
       "cannot send 17 fds in one datagram; at most 16"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.why);
    if (c.refuses_fds && !testing::KernelCanRefuseFds()) continue;  // Linux 6.16
    EchoHandler handler;
    ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
    wire::Channel client(std::move(pair.first));
    if (c.refuses_fds) {
      ASSERT_OK(wire::RefuseFds(client.fd()));
    }
    ConnectionLoop loop(IncomingConnection{std::move(pair.second), "mallory", 666, 666, 1},
                        handler, ConnectionLoop::Options());
    ASSERT_OK_AND_ASSIGN(bool serving, loop.Turn(0));  // takes the connection
    ASSERT_TRUE(serving);
    ASSERT_EQ(testing::RawSend(client.fd(), c.sent), 0);
    ::testing::internal::CaptureStderr();
    absl::StatusOr<bool> turned = loop.Turn(-1);
    const std::string logged = ::testing::internal::GetCapturedStderr();
    ASSERT_OK(turned.status());
    EXPECT_FALSE(*turned);  // its one connection closed
    EXPECT_EQ(logged, "");
    EXPECT_THAT(loop.client_fault(), StatusIs(c.code, ::testing::HasSubstr(c.why)));
    EXPECT_EQ(loop.client_fault_kind(), c.kind);
    EXPECT_THAT(client.Receive(), StatusIs(absl::StatusCode::kUnavailable));
  }
}

// Serving the broker's connections, the loop logs it (rate-limited).
TEST_F(ConnectionLoopTest, AClosedConnectionIsLoggedWithItsPeer) {
  ASSERT_OK_AND_ASSIGN(wire::Channel bad, harness_.Connect(Peer{"mallory", 666, 666, 1}));
  const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
  ASSERT_EQ(testing::RawSend(bad.fd(), junk), 0);
  ::testing::internal::CaptureStderr();
  absl::StatusOr<bool> turned = harness_.loop().Turn(-1);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(turned.status());
  EXPECT_THAT(logged, ::testing::AllOf(
                          ::testing::HasSubstr(
                              "closed the connection of principal 'mallory' (uid 666, pid 1): "),
                          ::testing::HasSubstr("not a message")));
  EXPECT_OK(harness_.loop().client_fault());  // said in the log only
}

// A client that makes its socket refuse fds (SO_PASSRIGHTS off).
// Log lines name a peer with its principal escaped: a broker's text never
// reaches stderr raw.
TEST(DescribePeerTest, ShowsThePrincipalEscaped) {
  EXPECT_EQ(DescribePeer(Peer{"alice", 1001, 1001, 9}), "principal 'alice' (uid 1001, pid 9)");
  EXPECT_EQ(DescribePeer(Peer{"a\n\x1b[2Jb", 1, 1, 2}), "principal 'a\\x0a\\x1b[2Jb' (uid 1, pid 2)");
}

Peer Mallory() { return Peer{"mallory", 666, 666, 1}; }

// The log line saying that Mallory()'s connection was closed because its
// socket refuses the fds of its reply.
::testing::Matcher<std::string> SaysMalloryRefusesFds() {
  return ::testing::EndsWith(
      "closed the connection of principal 'mallory' (uid 666, pid 1): PERMISSION_DENIED: the "
      "client's socket refuses the fds of its reply (SO_PASSRIGHTS off)\n");
}

// A reply that cannot be sent closes the connection; unless the client is
// gone, the log says why, naming the peer. A client whose socket refuses
// fds (SO_PASSRIGHTS off) while its reply carries one is a client fault.
TEST_F(ConnectionLoopTest, AClientThatRefusesTheFdsOfItsReplyIsLoggedWithItsPeer) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "needs SO_PASSRIGHTS (Linux 6.16)";
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect(Mallory()));
  ASSERT_OK(wire::RefuseFds(client.fd()));
  capnp::MallocMessageBuilder request;
  ::testing::internal::CaptureStderr();
  absl::StatusOr<wire::Incoming> reply = harness_.Call(client, Request(request, 7));
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(reply, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(logged, SaysMalloryRefusesFds());
  EXPECT_EQ(harness_.loop().connection_count(), 0u);
}

// More fds than a datagram carries is the service's bug: logged too.
TEST_F(ConnectionLoopTest, AReplyWithMoreFdsThanADatagramCarriesIsLogged) {
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect());
  capnp::MallocMessageBuilder request;
  ::testing::internal::CaptureStderr();
  absl::StatusOr<wire::Incoming> reply = harness_.Call(client, Request(request, 17));
  const std::string logged = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(reply, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(logged, ::testing::HasSubstr(
                          "cannot answer principal 'tester' (uid 1000, pid 4242): "
                          "INVALID_ARGUMENT: cannot send 17 fds in one datagram; at most 16"));
  EXPECT_EQ(harness_.loop().connection_count(), 0u);
}

TEST_F(ConnectionLoopTest, AHandlerErrorClosesTheConnection) {
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect());
  capnp::MallocMessageBuilder request;
  EXPECT_THAT(harness_.Call(client, Request(request, 666)),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(harness_.loop().connection_count(), 0u);
}

TEST_F(ConnectionLoopTest, ClosesRequestFdsTheHandlerLeftAndSendsReplyFds) {
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect());
  const int before = CountOpenFds();
  {
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    capnp::MallocMessageBuilder request;
    ASSERT_OK_AND_ASSIGN(wire::Incoming reply,
                         harness_.Call(client, Request(request, 3), {r.get(), w.get(), r.get()}));
    EXPECT_EQ(reply.reader->getRoot<schema::Reply>().getFds().size(), 3u);
  }
  EXPECT_EQ(CountOpenFds(), before);
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness_.Call(client, Request(request, 7)));
  ASSERT_EQ(reply.fds.size(), 1u);
  char c;
  EXPECT_EQ(read(reply.fds[0].get(), &c, 1), 0);  // the write end is closed
}

TEST(ConnectionLoopLimitTest, ClosesConnectionsBeyondTheLimit) {
  EchoHandler handler;
  LoopHarness harness(handler, ConnectionLoop::Options{.max_connections = 2});
  ASSERT_OK(harness.Start());
  ASSERT_OK_AND_ASSIGN(wire::Channel a, harness.Connect());
  ASSERT_OK_AND_ASSIGN(wire::Channel b, harness.Connect());
  ASSERT_OK_AND_ASSIGN(wire::Channel c, harness.Connect());
  EXPECT_EQ(harness.loop().connection_count(), 2u);
  // Told why (the handler's refusal reply), then closed.
  ASSERT_OK_AND_ASSIGN(wire::Incoming refusal, c.Receive());
  EXPECT_EQ(ReplyError(refusal), "the service serves at most 2 connections at once");
  EXPECT_EQ(handler.last_refusal, absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.Receive(), StatusIs(absl::StatusCode::kUnavailable));
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness.Call(b, Request(request, 2)));
  EXPECT_EQ(ReplyId(reply), 2u);
}

// One uid cannot hold every connection: beyond its own limit its new
// connections are closed, while other uids still get theirs.
TEST(ConnectionLoopLimitTest, ClosesConnectionsBeyondTheLimitOfTheirUid) {
  EchoHandler handler;
  LoopHarness harness(handler, ConnectionLoop::Options{.max_connections = 4,
                                                       .max_connections_per_uid = 2});
  ASSERT_OK(harness.Start());
  const Peer mallory{"mallory", 666, 666, 1}, mallory_again{"other", 666, 666, 2};
  ASSERT_OK_AND_ASSIGN(wire::Channel a, harness.Connect(mallory));
  ASSERT_OK_AND_ASSIGN(wire::Channel b, harness.Connect(mallory_again));
  ASSERT_OK_AND_ASSIGN(wire::Channel c, harness.Connect(mallory));  // one too many
  ASSERT_EQ(harness.loop().connection_count(), 2u);  // before a Receive that would wait
  ASSERT_OK_AND_ASSIGN(wire::Incoming refusal, c.Receive());
  EXPECT_EQ(ReplyError(refusal), "the service serves at most 2 connections of uid 666 at once");
  EXPECT_EQ(handler.last_refusal, absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.Receive(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(wire::Channel alice, harness.Connect(Peer{"alice", 1001, 1001, 3}));
  EXPECT_EQ(harness.loop().connection_count(), 3u);
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness.Call(alice, Request(request, 1)));
  EXPECT_EQ(ReplyId(reply), 1u);
  // A connection of the uid that ends makes room for another.
  { wire::Channel gone = std::move(a); }
  ASSERT_OK(harness.loop().Turn(-1).status());
  ASSERT_EQ(harness.loop().connection_count(), 2u);
  ASSERT_OK_AND_ASSIGN(wire::Channel d, harness.Connect(mallory));
  EXPECT_EQ(harness.loop().connection_count(), 3u);
  ASSERT_OK_AND_ASSIGN(reply, harness.Call(d, Request(request, 2)));
  EXPECT_EQ(ReplyId(reply), 2u);
}

// Sets RLIMIT_NOFILE's soft limit to `soft`; false if it cannot.
bool SetOpenFileLimit(rlim_t soft) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return false;
  limit.rlim_cur = soft;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

// What the fd-limit test's child does; its exit code says how far it got
// (0: all as expected).
//
// The lowered limit is in force only where the loop must meet it: at Init,
// which sizes the loop by it, and in the turn that receives the flood. The
// fds are sent under the original limit: the kernel refuses a sendmsg with
// fds (ETOOMANYREFS) when the fds in flight of the sender's USER, every
// process of its uid (other tests running at the same time), exceed the
// sender's own RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE in the initial
// user namespace, which a test in Bazel's sandbox lacks.
int ServeWithAFullFdTable() {
  // More connections than fit this process's fd table once RLIMIT_NOFILE
  // is lowered to kRoom above what is open (the loop's epoll and the
  // existing client's end take some of it).
  constexpr int kRoom = 24;
  constexpr int kFlood = 30;
  EchoHandler handler;
  LoopHarness harness(handler);
  if (!harness.Start().ok()) return 10;
  const int open = CountOpenFds();
  rlimit original{};
  if (open < 0 || getrlimit(RLIMIT_NOFILE, &original) != 0) return 11;
  const rlim_t lowered = static_cast<rlim_t>(open + kRoom);
  // The loop starts (Init) with this connection, under the lowered limit.
  absl::StatusOr<UniqueFd> existing_end = harness.broker().Connect(LoopHarness::DefaultPeer());
  if (!existing_end.ok()) return 13;
  if (!SetOpenFileLimit(lowered)) return 12;
  absl::StatusOr<bool> started = harness.loop().Turn(-1);
  if (!started.ok() || !*started || harness.loop().connection_count() != 1) return 13;
  wire::Channel existing(std::move(*existing_end));
  capnp::MallocMessageBuilder request;
  if (!harness.Call(existing, Request(request, 1)).ok()) return 14;
  // Each from a uid of its own (the per-uid limit is not what is tested);
  // the clients' ends are closed at once, so that only the service's ends
  // take room, all in the one turn that takes them.
  if (!SetOpenFileLimit(original.rlim_cur)) return 12;
  for (uint32_t i = 0; i < kFlood; ++i) {
    absl::StatusOr<UniqueFd> end = harness.broker().Connect(Peer{"flood", 2000 + i, 2000, 1});
    if (!end.ok()) {
      std::fprintf(stderr, "cannot send connection %u: %s\n", i, end.status().ToString().c_str());
      return 15;
    }
  }
  if (!SetOpenFileLimit(lowered)) return 12;
  absl::StatusOr<bool> serving = harness.loop().Turn(-1);
  if (!serving.ok()) {
    std::fprintf(stderr, "the loop ended: %s\n", serving.status().ToString().c_str());
    return 16;
  }
  if (!*serving) return 17;
  if (harness.loop().connection_count() >= static_cast<size_t>(kRoom)) return 18;
  absl::StatusOr<wire::Incoming> reply = harness.Call(existing, Request(request, 2));
  if (!reply.ok() || ReplyId(*reply) != 2) return 19;
  return 0;
}

// A service at its RLIMIT_NOFILE cannot receive the fd of a new connection:
// the broker's `incoming` event then arrives cut short (MSG_CTRUNC), and the
// Client drops it, its client told nothing (a Client that broke off the
// broker connection instead ended the service for every client). The loop
// bounds its connections by the fds it may still open, and closes those
// beyond, telling their clients why.
TEST(ConnectionLoopLimitTest, KeepsServingWhenMoreConnectionsComeThanItsFdTableHolds) {
  // 16: the loop ended; 18: it held more connections than fit.
  EXPECT_EQ(testing::ExitCodeInChild(ServeWithAFullFdTable), 0);
}

// What the queued-connections test's child does (0: all as expected).
//
// Connections the Client queued before the loop ran hold their fds
// already: the loop sizes itself by the free fds, and those are
// connections it holds, not fds used for good. With room for 2 more fds
// beyond the reserve and 5 connections queued, it holds all 5.
int ServeConnectionsQueuedInAFullFdTable() {
  constexpr size_t kQueued = 5;
  constexpr int kFreeBeyondReserve = 2;
  EchoHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  std::vector<UniqueFd> ends;  // the clients' ends, kept open
  for (uint32_t i = 0; i < kQueued; ++i) {
    absl::StatusOr<UniqueFd> end = broker->Connect(Peer{"queued", 2000 + i, 2000, 1});
    if (!end.ok()) return 11;
    ends.push_back(std::move(*end));
  }
  if (!broker->AnswerReady().ok() || !broker->client().Ready().ok()) return 12;
  if (broker->client().queued_incoming() != kQueued) return 13;
  // The loop's epoll fd, made at Init before it counts, takes one more.
  const int open = CountOpenFds();
  if (open < 0) return 14;
  if (!SetOpenFileLimit(static_cast<rlim_t>(open + 1 + static_cast<int>(kFdReserve) +
                                            kFreeBeyondReserve))) {
    return 15;
  }
  ConnectionLoop loop(broker->client(), handler,
                      ConnectionLoop::Options{.max_connections = kQueued + kFreeBeyondReserve});
  absl::StatusOr<bool> serving = loop.Turn(0);
  if (!serving.ok() || !*serving) return 16;
  if (loop.connection_count() != kQueued) {
    std::fprintf(stderr, "holds %zu of the %zu queued connections\n", loop.connection_count(),
                 kQueued);
    return 17;
  }
  return 0;
}

TEST(ConnectionLoopLimitTest, ConnectionsQueuedBeforeItRanAreNotFdsUsedForGood) {
  // 17: it closed some of them, its room lowered by their fds.
  EXPECT_EQ(testing::ExitCodeInChild(ServeConnectionsQueuedInAFullFdTable), 0);
}

// What the dropped-connections test's child does (0: all as expected).
//
// A call the service makes to the broker once ready reads the events ahead
// of its reply; those whose fd did not fit in the fd table were dropped by
// the Client, and their clients see end of stream. The loop says so, and
// serves those that fit.
int ServeAfterACallDroppedConnections() {
  constexpr size_t kWaiting = 6;
  constexpr size_t kRoom = 2;
  EchoHandler handler;
  absl::StatusOr<FakeBroker> broker = FakeBroker::Create();
  if (!broker.ok()) return 10;
  if (!broker->AnswerReady().ok() || !broker->client().Ready().ok()) return 11;
  absl::StatusOr<std::vector<UniqueFd>> ends = broker->ConnectDuringACall(kWaiting, kRoom);
  if (!ends.ok()) {
    std::fprintf(stderr, "the call failed: %s\n", ends.status().ToString().c_str());
    return 12;
  }
  if (broker->client().queued_incoming() != kRoom) return 13;
  ConnectionLoop loop(broker->client(), handler);
  ::testing::internal::CaptureStderr();
  absl::StatusOr<bool> serving = loop.Turn(0);
  const std::string logged = ::testing::internal::GetCapturedStderr();
  if (!serving.ok() || !*serving) return 14;
  if (loop.connection_count() != kRoom) return 15;
  if (logged.find("dropped 4 client connections") == std::string::npos ||
      logged.find("limits.openFiles") == std::string::npos) {
    std::fprintf(stderr, "logged: %s\n", logged.c_str());
    return 16;
  }
  for (size_t i = kRoom; i < kWaiting; ++i) {
    char byte;
    if (recv((*ends)[i].get(), &byte, 1, MSG_DONTWAIT) != 0) return 17;  // end of stream
  }
  wire::Channel served(std::move((*ends)[0]));
  capnp::MallocMessageBuilder request;
  if (!served.Send(Request(request, 1)).ok()) return 18;
  serving = loop.Turn(-1);
  if (!serving.ok() || !*serving) return 18;
  absl::StatusOr<wire::Incoming> reply = served.Receive();
  if (!reply.ok() || ReplyId(*reply) != 1) return 19;
  // Said once: the next turn has nothing new to say.
  ::testing::internal::CaptureStderr();
  if (!broker->Connect(LoopHarness::DefaultPeer()).ok() || !loop.Turn(-1).ok()) return 20;
  if (!::testing::internal::GetCapturedStderr().empty()) return 21;
  return 0;
}

TEST(ConnectionLoopLimitTest, SaysThatTheClientDroppedConnectionsDuringACall) {
  // 12: the call failed (DATA_LOSS: the broker connection was closed); 16:
  // nothing said.
  EXPECT_EQ(testing::ExitCodeInChild(ServeAfterACallDroppedConnections), 0);
}

// How fds escape the count a loop makes at Init: a handler that keeps a
// request's fds, or replies with fds to a client that does not read them,
// which the loop then holds until it does.
enum class Escape { kKeptRequestFds, kHeldReplyFds };

class EscapingHandler : public RequestHandler {
 public:
  explicit EscapingHandler(Escape escape) : escape_(escape) {}

  bool SetRefusal(const absl::Status& refusal, capnp::MessageBuilder& reply) override {
    reply.initRoot<schema::Reply>().initError().setMessage(std::string(refusal.message()));
    return true;
  }

  absl::Status Handle(Exchange& x) override {
    ++handled;
    auto reply = x.reply.initRoot<schema::Reply>();
    reply.setId(x.request.getRoot<schema::Request>().getId());
    if (escape_ == Escape::kKeptRequestFds) {
      for (UniqueFd& fd : x.request_fds) kept_.push_back(std::move(fd));
      return absl::OkStatus();
    }
    // Large, so that a few fill the client's queue; with an fd when one
    // can be opened.
    reply.initError().setMessage(std::string(48 * 1024, 'x'));
    UniqueFd fd(eventfd(0, EFD_CLOEXEC));
    if (fd) x.reply_fds.push_back(std::move(fd));
    return absl::OkStatus();
  }

  int handled = 0;

 private:
  const Escape escape_;
  std::vector<UniqueFd> kept_;
};

// The soft RLIMIT_NOFILE of the cramped fd table below, and the one in
// force while the test opens fds of its own, which it then parks above
// kCrampedLimit, out of the loop's way. The table is cramped by filling,
// not by a low limit: the kernel refuses a sendmsg with fds (ETOOMANYREFS)
// once the fds in flight of the sender's user (every test of the uid)
// exceed its limit, and the loop sends fds in its replies.
constexpr rlim_t kCrampedLimit = 1024;
constexpr rlim_t kRaisedLimit = kCrampedLimit + 256;

// Fills the free fd numbers below kCrampedLimit, all but `room`, with
// copies of /dev/null held in `filler`; false if it cannot.
bool Cramp(int room, std::vector<UniqueFd>& filler) {
  int free = 0;
  for (int fd = 0; fd < static_cast<int>(kCrampedLimit); ++fd) {
    if (fcntl(fd, F_GETFD) < 0) ++free;
  }
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null || null.get() >= static_cast<int>(kCrampedLimit) || free <= room) return false;
  for (int i = 1; i < free - room; ++i) {
    UniqueFd copy(fcntl(null.get(), F_DUPFD_CLOEXEC, 0));
    if (!copy || copy.get() >= static_cast<int>(kCrampedLimit)) return false;
    filler.push_back(std::move(copy));
  }
  filler.push_back(std::move(null));
  return true;
}

// `fd` moved to a number at or above kCrampedLimit (the limit must be
// raised); invalid if it cannot be.
UniqueFd Park(UniqueFd fd) {
  return UniqueFd(fcntl(fd.get(), F_DUPFD_CLOEXEC, static_cast<int>(kCrampedLimit)));
}

// Sends requests on `client` (borrowed), turning the loop between, until
// the loop reads no more of them (its reply to one waits for the client to
// read), or has closed the connection.
absl::Status FillUntilStuck(LoopHarness& harness, EscapingHandler& handler, int client) {
  capnp::MallocMessageBuilder message;
  absl::StatusOr<kj::Array<capnp::word>> words = wire::Flatten(Request(message, 1));
  if (!words.ok()) return words.status();
  auto bytes = words->asBytes();
  for (int sent = 0, stuck = 0; stuck < 3;) {
    if (sent > 1000) return absl::InternalError("the loop reads every request");
    const int error = testing::RawSend(
        client, absl::MakeConstSpan(bytes.begin(), bytes.size()), {}, MSG_DONTWAIT);
    if (error == 0) {
      ++sent;
      stuck = 0;
      continue;
    }
    if (error != EAGAIN) return absl::OkStatus();  // the loop closed it
    const int handled = handler.handled;
    if (absl::Status turned = harness.TurnNow(); !turned.ok()) return turned;
    if (handler.handled == handled) ++stuck;
  }
  return absl::OkStatus();
}

// What the fd-escape test's child does; its exit code says how far it got
// (0: all as expected; 77: no room to raise RLIMIT_NOFILE).
int ServeWhileFdsEscapeTheCount(Escape escape) {
  constexpr int kRoom = 24;
  constexpr int kFlood = 4;
  rlimit original{};
  if (getrlimit(RLIMIT_NOFILE, &original) != 0) return 11;
  if (original.rlim_max < kRaisedLimit) return 77;
  EscapingHandler handler(escape);
  LoopHarness harness(handler, ConnectionLoop::Options{
                                   .max_request_fds = escape == Escape::kKeptRequestFds ? 1u : 0u});
  if (!harness.Start().ok()) return 10;
  if (!SetOpenFileLimit(kRaisedLimit)) return 12;
  // What the clients send with their requests, when they send fds.
  UniqueFd null = Park(UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC)));
  std::vector<UniqueFd> filler;
  if (!null || !Cramp(kRoom, filler) || !SetOpenFileLimit(kCrampedLimit)) return 12;
  // A connection made with the limit raised; the client's end parked.
  auto connect = [&](const Peer& peer) -> UniqueFd {
    UniqueFd parked;
    if (SetOpenFileLimit(kRaisedLimit)) {
      absl::StatusOr<UniqueFd> end = harness.broker().Connect(peer);
      if (end.ok()) parked = Park(std::move(*end));
    }
    if (!SetOpenFileLimit(kCrampedLimit)) return UniqueFd();
    return parked;
  };
  auto turn = [&]() -> int {
    absl::StatusOr<bool> serving = harness.loop().Turn(-1);
    if (!serving.ok()) {
      std::fprintf(stderr, "the loop ended: %s\n", serving.status().ToString().c_str());
      return 16;
    }
    return *serving ? 0 : 17;
  };
  // The loop starts (Init) with this connection, whose client reads.
  UniqueFd existing_end = connect(LoopHarness::DefaultPeer());
  if (!existing_end) return 13;
  if (int code = turn(); code != 0) return code;
  wire::Channel existing(std::move(existing_end));
  capnp::MallocMessageBuilder request;
  absl::StatusOr<kj::Array<capnp::word>> words = wire::Flatten(Request(request, 1));
  if (!words.ok()) return 10;
  auto bytes = words->asBytes();
  // Clients, one uid each, until the loop refuses one. Each sends a
  // request with an fd, which the handler keeps; or, once all are in,
  // requests until the loop holds a reply (and its fd) for it.
  std::vector<UniqueFd> clients;
  for (uint32_t i = 0; i < 40; ++i) {
    const size_t before = harness.loop().connection_count();
    UniqueFd client = connect(Peer{"client", 2000 + i, 2000, 1});
    if (!client) return 14;
    if (int code = turn(); code != 0) return code;
    if (harness.loop().connection_count() == before) break;  // refused: the loop is full
    if (escape == Escape::kKeptRequestFds) {
      const int fd = null.get();
      if (testing::RawSend(client.get(), absl::MakeConstSpan(bytes.begin(), bytes.size()),
                           {&fd, 1}) != 0) {
        return 15;
      }
      if (int code = turn(); code != 0) return code;
    }
    clients.push_back(std::move(client));
  }
  if (escape == Escape::kHeldReplyFds) {
    for (const UniqueFd& client : clients) {
      absl::Status filled = FillUntilStuck(harness, handler, client.get());
      if (!filled.ok()) {
        std::fprintf(stderr, "the loop ended: %s\n", filled.ToString().c_str());
        return 16;
      }
    }
  }
  // More connections, taken in one turn with whatever room the loop left.
  for (uint32_t i = 0; i < kFlood; ++i) {
    if (!connect(Peer{"flood", 3000 + i, 3000, 1})) return 14;
  }
  if (int code = turn(); code != 0) return code;
  absl::StatusOr<wire::Incoming> reply = harness.Call(existing, Request(request, 2));
  if (!reply.ok() || ReplyId(*reply) != 2) return 19;
  return 0;
}

// The loop's count of connections at Init assumes every other fd comes and
// goes within a turn. Fds that stay (a handler keeps a request's, the loop
// holds a reply's for a client that does not read) could take the room the
// broker's next `incoming` needs, and its fd would be cut off (MSG_CTRUNC):
// the connection dropped, its client told nothing. So a new connection is
// refused, and a reply with fds that would have to be held closes its
// connection instead, when the fd table has less than its reserve free.
TEST(ConnectionLoopLimitTest, KeepsServingWhenFdsAHandlerKeepsFillTheFdTable) {
  const int code =
      testing::ExitCodeInChild([] { return ServeWhileFdsEscapeTheCount(Escape::kKeptRequestFds); });
  if (code == 77) GTEST_SKIP() << "RLIMIT_NOFILE's hard limit is below " << kRaisedLimit;
  // 16: the loop ended.
  EXPECT_EQ(code, 0);
}

// A reply held for a client that did not read it is sent once there is
// room: a client that meanwhile made its socket refuse fds is closed, and
// the log says so, as when the reply is sent at once.
TEST(ConnectionLoopHeldReplyTest, AClientThatRefusesTheFdsOfAHeldReplyIsLoggedWithItsPeer) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "needs SO_PASSRIGHTS (Linux 6.16)";
  EscapingHandler handler(Escape::kHeldReplyFds);
  LoopHarness harness(handler);
  ASSERT_OK(harness.Start());
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness.Connect(Mallory()));
  ASSERT_OK(FillUntilStuck(harness, handler, client.fd()));
  ASSERT_EQ(harness.loop().connection_count(), 1u);  // a reply held, not closed
  ASSERT_OK(wire::RefuseFds(client.fd()));
  ASSERT_OK(SetNonBlocking(client.fd(), true));
  while (client.Receive().ok()) {
  }
  ::testing::internal::CaptureStderr();
  absl::Status turned = harness.TurnNow();  // room: the held reply goes out
  const std::string logged = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(turned);
  EXPECT_THAT(logged, SaysMalloryRefusesFds());
  EXPECT_EQ(harness.loop().connection_count(), 0u);
}

TEST(ConnectionLoopLimitTest, KeepsServingWhenRepliesHeldForClientsThatDoNotReadFillTheFdTable) {
  const int code =
      testing::ExitCodeInChild([] { return ServeWhileFdsEscapeTheCount(Escape::kHeldReplyFds); });
  if (code == 77) GTEST_SKIP() << "RLIMIT_NOFILE's hard limit is below " << kRaisedLimit;
  // 16: the loop ended.
  EXPECT_EQ(code, 0);
}

// A protocol without error replies: a refused connection is just closed.
TEST(ConnectionLoopLimitTest, WithoutARefusalReplyAConnectionBeyondTheLimitIsJustClosed) {
  PlainHandler handler;
  LoopHarness harness(handler, ConnectionLoop::Options{.max_connections = 1});
  ASSERT_OK(harness.Start());
  ASSERT_OK_AND_ASSIGN(wire::Channel a, harness.Connect());
  ASSERT_OK_AND_ASSIGN(wire::Channel b, harness.Connect());
  EXPECT_THAT(b.Receive(), StatusIs(absl::StatusCode::kUnavailable));
}

// Fail-closed: a service that does not say its requests carry fds gets
// none, and its handler never sees a request that came with one.
TEST(ConnectionLoopFdTest, ByDefaultRequestsCarryNoFds) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  EchoHandler handler;
  LoopHarness harness(handler);
  ASSERT_OK(harness.Start());
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness.Connect());
  capnp::MallocMessageBuilder request;
  absl::StatusOr<wire::Incoming> reply = harness.Call(client, Request(request, 1), {r.get()});
  if (testing::KernelCanRefuseFds()) {
    // Refused by the kernel at the client's sendmsg (see below).
    EXPECT_THAT(reply, StatusIs(absl::StatusCode::kPermissionDenied));
  } else {
    // Discarded unread, and the request refused.
    ASSERT_OK(reply.status());
    EXPECT_THAT(ReplyError(*reply), ::testing::HasSubstr("requests to this service carry no fds"));
    EXPECT_EQ(handler.refused, 1);
  }
  EXPECT_EQ(handler.handled, 0);
}

// A service whose requests carry no fds refuses them at its socket
// (wire::RefuseFds): the client's sendmsg fails, and nothing reaches the
// service, which then never drops a client's file (see wire::FdPolicy).
// The broker does so before the client gets its end; the loop does it too,
// for connections made otherwise.
TEST(ConnectionLoopFdTest, AServiceThatTakesNoFdsRefusesThemAtItsSocket) {
  if (!testing::KernelCanRefuseFds()) GTEST_SKIP() << "no SO_PASSRIGHTS (Linux 6.16)";
  for (size_t allowed : {0, 1}) {
    SCOPED_TRACE(allowed);
    EchoHandler handler;
    LoopHarness harness(handler, ConnectionLoop::Options{.max_request_fds = allowed});
    ASSERT_OK(harness.Start());
    ASSERT_OK_AND_ASSIGN(wire::Channel client, harness.Connect());
    capnp::MallocMessageBuilder request;
    const int any = STDIN_FILENO;
    absl::StatusOr<wire::Incoming> reply = harness.Call(client, Request(request, 1), {&any, 1});
    if (allowed == 0) {
      EXPECT_THAT(reply, StatusIs(absl::StatusCode::kPermissionDenied,
                                  ::testing::HasSubstr("refuses fds")));
      EXPECT_EQ(handler.refused, 0);
      ASSERT_OK_AND_ASSIGN(reply, harness.Call(client, Request(request, 2)));
      EXPECT_EQ(ReplyId(*reply), 2u);
    } else {
      ASSERT_OK(reply.status());
      EXPECT_EQ(reply->reader->getRoot<schema::Reply>().getFds().size(), 1u);
    }
  }
}

TEST(ConnectionLoopFdTest, RequestsWithMoreFdsThanAllowedAreRefused) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  const int read_end = r.get();
  for (size_t allowed : {0, 1}) {
    SCOPED_TRACE(allowed);
    EchoHandler handler;
    LoopHarness harness(handler, ConnectionLoop::Options{.max_request_fds = allowed});
    ASSERT_OK(harness.Start());
    capnp::MallocMessageBuilder request;
    // Sent before the loop took the connection: a service that takes none
    // refuses fds at its socket from then on (see above).
    ASSERT_OK_AND_ASSIGN(wire::Channel client,
                         SendBeforeAccept(harness, Request(request, 1), {r.get(), w.get()}));
    ASSERT_OK_AND_ASSIGN(wire::Incoming reply, client.Receive());
    EXPECT_THAT(ReplyError(reply), ::testing::HasSubstr(
                                       allowed == 0 ? "requests to this service carry no fds"
                                                    : "carry at most 1 fds; this one came with 2"));
    EXPECT_EQ(handler.refused, 1);
    EXPECT_EQ(handler.handled, 0);
    // The connection serves on; what is allowed reaches the handler.
    ASSERT_OK_AND_ASSIGN(reply, harness.Call(client, Request(request, 2),
                                             absl::MakeConstSpan(&read_end, allowed)));
    EXPECT_EQ(ReplyId(reply), 2u);
    EXPECT_EQ(reply.reader->getRoot<schema::Reply>().getFds().size(), allowed);
  }
  // A protocol that cannot say it loses the connection instead.
  PlainHandler plain;
  LoopHarness harness(plain, ConnectionLoop::Options{.max_request_fds = 0});
  ASSERT_OK(harness.Start());
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Channel client,
                       SendBeforeAccept(harness, Request(request, 1), {r.get()}));
  EXPECT_THAT(client.Receive(), StatusIs(absl::StatusCode::kUnavailable));
}

// A service that takes no fds must never install one a client sends: it
// would then close it on its only thread, and close() of a FUSE file sends
// FLUSH and waits for the FUSE server, which a client can run itself. The
// FUSE server here refuses, and counts, what the loop's thread (this one)
// asks of it, where a hostile server would never answer. The fd is sent
// before the loop takes the connection, as on a kernel that cannot refuse
// it (after, the client's sendmsg fails: see above).
TEST(ConnectionLoopFdTest, FdsToAServiceThatTakesNoneAreNeverInstalled) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a FUSE file system";
  // The mount stays in this test binary's own mount namespace.
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
  testing::TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("mnt").c_str(), 0755), 0);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::FuseFile> fuse,
                       testing::FuseFile::Mount(dir.Join("mnt"), "file",
                                                dir.WriteFile("source", "contents"), false));
  UniqueFd file(open(fuse->path().c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file) << strerror(errno);

  EchoHandler handler;
  LoopHarness harness(handler, ConnectionLoop::Options{.max_request_fds = 0});
  ASSERT_OK(harness.Start());
  fuse->RefuseThread(gettid());
  capnp::MallocMessageBuilder request;
  absl::StatusOr<wire::Channel> client = SendBeforeAccept(harness, Request(request, 1),
                                                          {file.get()});
  fuse->RefuseThread(0);
  EXPECT_EQ(fuse->refused(), 0) << "the loop installed the client's fd and closed it (FLUSH)";
  ASSERT_OK(client.status());
  absl::StatusOr<wire::Incoming> reply = client->Receive();
  ASSERT_OK(reply.status());
  EXPECT_THAT(ReplyError(*reply), ::testing::HasSubstr("carry no fds"));
  EXPECT_EQ(handler.handled, 0);
}

TEST_F(ConnectionLoopTest, AClientThatDoesNotReadStallsOnlyItself) {
  ASSERT_OK_AND_ASSIGN(wire::Channel lazy, harness_.Connect());
  ASSERT_OK_AND_ASSIGN(wire::Channel busy, harness_.Connect());
  capnp::MallocMessageBuilder message;
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> words, wire::Flatten(Request(message, 1)));
  auto bytes = words.asBytes();
  // Send until neither the service's queue nor the lazy client's takes more.
  int sent = 0;
  for (int stuck = 0; stuck < 3 && sent < 100000;) {
    if (testing::RawSend(lazy.fd(), absl::MakeConstSpan(bytes.begin(), bytes.size()), {},
                         MSG_DONTWAIT) == 0) {
      ++sent;
      stuck = 0;
      continue;
    }
    const int handled = handler_.handled;
    ASSERT_OK(harness_.TurnNow());
    if (handler_.handled == handled) ++stuck;
  }
  ASSERT_LT(sent, 100000);
  capnp::MallocMessageBuilder request;
  ASSERT_OK_AND_ASSIGN(wire::Incoming reply, harness_.Call(busy, Request(request, 9)));
  EXPECT_EQ(ReplyId(reply), 9u);
  // Everything the lazy client sent is answered once it reads: the loop
  // sends the held reply when there is room, then reads the next request.
  for (int received = 0; received < sent;) {
    if (!Readable(lazy.fd())) {
      ASSERT_OK(harness_.loop().Turn(-1).status());
      continue;
    }
    ASSERT_OK_AND_ASSIGN(wire::Incoming incoming, lazy.Receive());
    ASSERT_EQ(ReplyId(incoming), 1u);
    ++received;
  }
  EXPECT_EQ(handler_.handled, sent + 1);
}

TEST_F(ConnectionLoopTest, EndsWhenTheBrokerClosesAndClosesEverything) {
  ASSERT_OK_AND_ASSIGN(wire::Channel client, harness_.Connect());
  harness_.broker().Close();
  ASSERT_OK_AND_ASSIGN(bool serving, harness_.loop().Turn(-1));
  EXPECT_FALSE(serving);
}

TEST(ConnectionLoopLeakTest, DestroyingTheLoopClosesEveryConnection) {
  const int baseline = CountOpenFds();
  {
    EchoHandler handler;
    LoopHarness harness(handler);
    ASSERT_OK(harness.Start());
    std::vector<wire::Channel> clients;
    for (int i = 0; i < 10; ++i) {
      ASSERT_OK_AND_ASSIGN(wire::Channel client, harness.Connect());
      clients.push_back(std::move(client));
    }
    EXPECT_EQ(harness.loop().connection_count(), 10u);
  }
  EXPECT_EQ(CountOpenFds(), baseline);
}

}  // namespace
}  // namespace capbroker
