// BrokerLoop in one process: its queues and the audit log, driven through
// LoopPort (as the service host drives it) and one loop turn at a time.
#include "broker/server/broker_loop.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "broker/policy/policy_parser.h"
#include "broker/server/reporting_directory.h"
#include "broker/server/service_directory.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/child_exit.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/request_bytes.h"
#include "tests/fixtures/syscall_filter.h"
#include "tests/fixtures/json_object.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::server {
namespace {

class BrokerLoopTest : public ::testing::Test {
 protected:
  BrokerLoopTest()
      : audit_fd_(open(dir_.Join("audit").c_str(),
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)),
        audit_(audit_fd_.get()),
        handler_(audit_, stats_) {}

  // Every write to the audit log fails from now on (ENOSPC): its fd number
  // now names /dev/full.
  void BreakAuditLog() {
    UniqueFd full(open("/dev/full", O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(full.valid());
    ASSERT_EQ(dup3(full.get(), audit_fd_.get(), O_CLOEXEC), audit_fd_.get());
  }

  // A connection of uid 1000 added to `loop` (as a service's, which a test
  // can add; served as any): the test's end, and the loop's fd.
  std::pair<UniqueFd, int> AddUid1000(BrokerLoop& loop) {
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
    EXPECT_OK(pair.status());
    if (!pair.ok()) return {};
    const int served = pair->first.get();
    EXPECT_EQ(fcntl(served, F_SETFL, O_NONBLOCK), 0);
    Identity client;
    client.uid = 1000;
    client.service = "svc";
    EXPECT_OK(loop.AddServiceConnection(std::move(pair->first), client).status());
    return {std::move(pair->second), served};
  }

  // With the log broken, records lines until a flush inside Record (its
  // buffer full) loses them, and the lines recorded before with them.
  void LoseLinesInAFlushInsideRecord() {
    BreakAuditLog();
    audit::AuditEvent event;
    event.request = "acquire";
    event.capability = "m";
    event.access = "readWrite";
    event.granted = true;
    for (int i = 0; audit_.lines_dropped() == 0; ++i) {
      ASSERT_LT(i, 100000) << "Record never flushed by itself";
      audit_.Record(event, audit::InstantNow());
    }
  }

  // A grant of memory "m" answering request `id`, allowed by principal
  // "me", its line recorded (not yet written), with one fd.
  Answer Grant(uint64_t id) {
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<schema::Reply>();
    reply.setId(id);
    reply.setGranted();
    auto info = reply.initFds(1)[0];
    info.setName("m");
    info.setKind(schema::Kind::MEMORY);
    info.setAccess(schema::Access::READ_WRITE);
    Answer answer;
    answer.words = std::move(wire::Flatten(message)).value();
    answer.id = id;
    answer.outcome.fds.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
    audit::AuditEvent event;
    event.request = "acquire";
    event.capability = "m";
    event.access = "readWrite";
    event.granted = true;
    answer.outcome.audit_line = audit_.Record(event, audit::InstantNow());
    answer.outcome.principal = "me";
    ++stats_.grants;
    return answer;
  }

  // Adds a service's connection (as the host makes it) whose socket is
  // full: the loop's sends to it wait in its queue. Returns its id.
  uint64_t AddFullServiceConnection(BrokerLoop& loop, UniqueFd& peer) {
    absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = wire::SeqpacketPair();
    EXPECT_OK(pair.status());
    if (!pair.ok()) return 0;
    EXPECT_EQ(fcntl(pair->first.get(), F_SETFL, O_NONBLOCK), 0);
    Identity service;
    service.service = "svc";
    absl::StatusOr<uint64_t> id = loop.AddServiceConnection(std::move(pair->first), service);
    EXPECT_OK(id.status());
    if (!id.ok()) return 0;
    peer = std::move(pair->second);
    for (size_t filled = 0;; ++filled) {
      Answer filler;
      filler.words = kj::heapArray<capnp::word>(128);
      std::fill(filler.words.begin(), filler.words.end(), capnp::word());
      if (!loop.Deliver(*id, std::move(filler))) break;
      if (filled > 1000000) {
        ADD_FAILURE() << "the service's socket never fills";
        break;
      }
    }
    return *id;
  }

  // The audit lines that say a grant was not delivered.
  std::vector<std::string> NotDeliveredLines() {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(ReadAudit(), '\n', absl::SkipEmpty())) {
      if (absl::StrContains(line, "not delivered")) lines.emplace_back(line);
    }
    return lines;
  }

  // What the audit log's file holds.
  std::string ReadAudit() {
    std::string text;
    UniqueFd fd(open(dir_.Join("audit").c_str(), O_RDONLY | O_CLOEXEC));
    char buffer[4096];
    ssize_t n;
    while (fd.valid() && (n = read(fd.get(), buffer, sizeof(buffer))) > 0) {
      text.append(buffer, static_cast<size_t>(n));
    }
    return text;
  }

  // Runs the loop for one turn: it sends what its queues hold, then stops.
  void OneTurn(BrokerLoop& loop) {
    UniqueFd listener(eventfd(0, EFD_CLOEXEC));  // never readable
    UniqueFd control(eventfd(1, EFD_CLOEXEC));   // readable at once
    ASSERT_OK(loop.Serve(listener.get(), control.get(), [] { return true; }));
  }

  // Makes `listener`, a listening socket at dir_/s that still takes fds, as
  // one from systemd does until Listener::FromSystemd turns that off. With
  // `pass_credentials`, SO_PASSCRED is on, as a unit's PassCredentials=
  // sets it. `backlog`: connections that may wait to be accepted.
  void ListenTakingFds(UniqueFd& listener, bool pass_credentials = false, int backlog = 8) {
    UniqueFd made(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ASSERT_TRUE(made.valid());
    const int on = 1;
    if (pass_credentials) {
      ASSERT_EQ(setsockopt(made.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
    }
    ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(dir_.Join("s")));
    ASSERT_EQ(bind(made.get(), reinterpret_cast<sockaddr*>(&address.addr), address.length), 0);
    ASSERT_EQ(listen(made.get(), backlog), 0);
    listener = std::move(made);
  }

  // Whether a test needs its listener to refuse fds, or only takes that
  // where the kernel can (SO_PASSRIGHTS, Linux 6.16), as capbrokerd does.
  enum class FdRefusal { kRequired, kWhereSupported };

  // Makes `listener`, a listening socket at dir_/s that refuses fds (as
  // Listener makes it: a connection taken from a listener that did not
  // refuse fds would be kept, unread, rather than closed). When the kernel
  // cannot refuse fds, left invalid with FdRefusal::kRequired, and a plain
  // listener with kWhereSupported, for tests that do not send fds.
  // With `pass_credentials`, SO_PASSCRED is on, as a unit's PassCredentials=
  // sets it. `backlog`: connections that may wait to be accepted.
  void Listen(UniqueFd& listener, bool pass_credentials = false, int backlog = 8,
              FdRefusal refusal = FdRefusal::kRequired) {
    UniqueFd made;
    ASSERT_NO_FATAL_FAILURE(ListenTakingFds(made, pass_credentials, backlog));
    absl::Status refused = wire::RefuseFds(made.get());
    if (refused.code() == absl::StatusCode::kUnimplemented &&
        refusal == FdRefusal::kRequired) {
      return;
    }
    if (refused.code() != absl::StatusCode::kUnimplemented) {
      ASSERT_OK(refused);
    }
    listener = std::move(made);
  }

  // Reads every reply waiting in `client` (borrowed), never waiting for
  // one, and passes each to `each`. False once the broker has hung up on it.
  bool ReadWaitingReplies(int client, const std::function<void(schema::Reply::Reader)>& each) {
    for (pollfd readable{client, POLLIN, 0}; poll(&readable, 1, 0) == 1;) {
      absl::StatusOr<std::optional<wire::Datagram>> datagram =
          wire::ReceiveDatagram(client, receive_buffer_);
      if (!datagram.ok() || !datagram->has_value()) return false;
      capnp::FlatArrayMessageReader reader((*datagram)->words);
      each(reader.getRoot<schema::Reply>());
    }
    return true;
  }

  // Grants memory "m" to our uid.
  void SetMemoryPolicy() {
    ASSERT_OK_AND_ASSIGN(
        Policy policy,
        ParsePolicy(absl::StrCat(R"(( capabilities = [ ( name = "m", memory = ( size = 4096 ) ) ],
            principals = [ ( name = "me", match = ( uid = )",
                                 getuid(), R"( ), grants = [ "m" ] ) ] ))"),
                    "t.capnp"));
    ASSERT_OK(handler_.SetPolicy(std::move(policy)));
  }

  testing::TempDir dir_;
  UniqueFd audit_fd_;
  audit::AuditLog audit_;
  Stats stats_;
  RequestHandler handler_;
  wire::ReceiveBuffer receive_buffer_;  // ReadWaitingReplies'
};

// Queue makes room for an answer by sending what its connection's queue
// holds, and every send first writes the audit log: the line of the answer
// being queued, recorded a moment before, is written (and here lost) while
// the answer is in no queue. It must be withheld all the same.
TEST_F(BrokerLoopTest, GrantWhoseLineIsLostWhileMakingRoomIsWithheld) {
  Limits limits;
  limits.max_queued_replies = 1;  // a second grant makes Queue send first
  BrokerLoop loop(handler_, audit_, stats_, limits);
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(uint64_t id, loop.AddServiceConnection(std::move(pair.first), service));

  Answer first = Grant(1);
  ASSERT_THAT(loop.AuditLinesLost({first.outcome.audit_line}), ::testing::IsEmpty());
  ASSERT_TRUE(loop.Send(id, std::move(first)));  // queued: sent at the turn's end
  BreakAuditLog();
  Answer second = Grant(2);
  loop.Send(id, std::move(second));
  OneTurn(loop);

  wire::ReceiveBuffer buffer;
  for (uint64_t expected_id : {1, 2}) {
    SCOPED_TRACE(expected_id);
    ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> datagram,
                         wire::ReceiveDatagram(pair.second.get(), buffer));
    ASSERT_TRUE(datagram.has_value());
    capnp::FlatArrayMessageReader reader(datagram->words);
    auto reply = reader.getRoot<schema::Reply>();
    EXPECT_EQ(reply.getId(), expected_id);
    if (expected_id == 1) {
      EXPECT_TRUE(reply.isGranted());
      EXPECT_EQ(datagram->fds.size(), 1u);
    } else {
      EXPECT_EQ(datagram->fds.size(), 0u) << "a grant went out without its audit line";
      ASSERT_TRUE(reply.isError());
      EXPECT_EQ(reply.getError().getCode(), schema::ErrorCode::UNAVAILABLE);
    }
  }
  EXPECT_EQ(stats_.grants, 1u);
}

// A flush that finds the audit log's file deleted and its path refused (a
// symlink put there) tells the loop, which shows why in capctl status as
// a refused SIGHUP's; the line still goes to the deleted file, and counts
// as written, and as one lost with the deleted file.
TEST_F(BrokerLoopTest, AReopenRefusedAfterTheLogWasDeletedShowsInStatus) {
  const std::string path = dir_.Join("file.audit");
  ASSERT_OK_AND_ASSIGN(audit_, audit::AuditLog::OpenFile(path));
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_EQ(symlink(dir_.Join("elsewhere").c_str(), path.c_str()), 0);
  Answer grant = Grant(1);
  EXPECT_THAT(loop.AuditLinesLost({grant.outcome.audit_line}), ::testing::IsEmpty());
  EXPECT_THAT(stats_.audit_reopen_error,
              ::testing::AllOf(::testing::HasSubstr("deleted"), ::testing::HasSubstr("symlink")));
  EXPECT_EQ(stats_.audit_lines_to_deleted_files, 1u);
}

// Record flushes by itself once its buffer is full; lines that flush
// loses leave nothing pending. The loop's next flush still brings their
// count to capctl status: status and list write no line, so no later
// flush would.
TEST_F(BrokerLoopTest, LinesLostByAFlushInsideRecordShowInStatus) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  LoseLinesInAFlushInsideRecord();
  ASSERT_FALSE(audit_.has_pending());
  EXPECT_THAT(loop.AuditLinesLost({}), ::testing::IsEmpty());
  EXPECT_EQ(stats_.audit_lines_dropped, audit_.lines_dropped());
}

// A grant still queued when its connection closes (here the service host
// closing a service's connection), whose line a flush inside Record lost
// since the last flush of the loop's, is withheld: never put on record as
// not delivered, since the log does not hold it, nor counted as granted.
TEST_F(BrokerLoopTest, AGrantWhoseLineWasLostIsWithheldWhenItsConnectionCloses) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(uint64_t id, loop.AddServiceConnection(std::move(pair.first), service));
  ASSERT_TRUE(loop.Send(id, Grant(1)));  // queued, its line not yet written
  LoseLinesInAFlushInsideRecord();
  ASSERT_EQ(stats_.grants, 1u);
  const uint64_t denials = stats_.denials;
  loop.CloseConnection(id);
  EXPECT_EQ(stats_.grants, 0u) << "a grant the log does not hold still counts as granted";
  EXPECT_EQ(stats_.denials, denials + 1) << "one denial: the withheld grant's, nothing more";
}

// The loop stops at the end of the turn that read the stop (the control
// fd), once it has sent what that turn answered: a request that came in the
// same batch gets its reply, not a connection closed on it. What is still
// queued when the broker stops (the host's answers to the connects that
// waited) goes out with SendWhatIsQueued, after its audit line.
TEST_F(BrokerLoopTest, WhatIsAnsweredGoesOutWhenTheLoopStops) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(pair.first.get(), F_SETFL, O_NONBLOCK), 0);  // as the host makes it
  ASSERT_EQ(fcntl(pair.second.get(), F_SETFL, O_NONBLOCK), 0);
  Identity service;
  service.service = "svc";
  ASSERT_OK(loop.AddServiceConnection(std::move(pair.first), service).status());
  // Readable before Serve adds the control fd: epoll reports it first, in
  // the batch that stops the loop. (Answered with an error, as no hello
  // came first, and then closed: a reply all the same.)
  ASSERT_EQ(testing::RawSend(pair.second.get(), testing::StatusBytes(1)), 0);
  OneTurn(loop);
  wire::ReceiveBuffer buffer;
  ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> reply,
                       wire::ReceiveDatagram(pair.second.get(), buffer));
  ASSERT_TRUE(reply.has_value()) << "the request read with the stop got no reply";
  capnp::FlatArrayMessageReader status(reply->words);
  EXPECT_EQ(status.getRoot<schema::Reply>().getId(), 1u);

  ASSERT_OK_AND_ASSIGN(auto other, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(other.first.get(), F_SETFL, O_NONBLOCK), 0);
  ASSERT_EQ(fcntl(other.second.get(), F_SETFL, O_NONBLOCK), 0);
  ASSERT_OK_AND_ASSIGN(uint64_t id, loop.AddServiceConnection(std::move(other.first), service));
  ASSERT_TRUE(loop.Send(id, Grant(2)));  // queued, as the host answers at the stop
  loop.SendWhatIsQueued();
  ASSERT_OK_AND_ASSIGN(reply, wire::ReceiveDatagram(other.second.get(), buffer));
  ASSERT_TRUE(reply.has_value()) << "the queued grant was not sent";
  capnp::FlatArrayMessageReader grant(reply->words);
  EXPECT_EQ(grant.getRoot<schema::Reply>().getId(), 2u);
  EXPECT_TRUE(grant.getRoot<schema::Reply>().isGranted());
  EXPECT_EQ(reply->fds.size(), 1u);
  EXPECT_TRUE(absl::StrContains(ReadAudit(), R"("kind":"acquire","capability":"m")"));
}

// A service's end of a new connection (a datagram of at most 1 KiB with
// one fd: see kServiceSendBufferBytes) goes into the service's socket at
// once, never into the broker's queue, or is refused and closed: the
// broker never holds an end whose other end a client may already send fds
// into. The socket takes every connect that may wait for a service to
// start (service::kMaxPendingConnects) at once.
TEST_F(BrokerLoopTest, AServicesEndOfAConnectionLeavesAtOnceOrNotAtAll) {
  constexpr size_t kMaxPendingConnects = 1024;
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(pair.first.get(), F_SETFL, O_NONBLOCK), 0);  // as the host makes it
  ASSERT_EQ(fcntl(pair.second.get(), F_SETFL, O_NONBLOCK), 0);  // read below until empty
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(uint64_t id, loop.AddServiceConnection(std::move(pair.first), service));
  auto incoming = [](UniqueFd end) {
    Answer answer;
    answer.words = kj::heapArray<capnp::word>(128);
    std::fill(answer.words.begin(), answer.words.end(), capnp::word());
    answer.outcome.fds.push_back(std::move(end));
    return answer;
  };
  size_t delivered = 0;
  int pipe_fds[2];
  for (;;) {
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
    UniqueFd read_end(pipe_fds[0]);
    if (!loop.Deliver(id, incoming(UniqueFd(pipe_fds[1])))) {
      // Refused: its fd is closed, not kept (the pipe has no writer).
      pollfd hung_up{read_end.get(), POLLIN, 0};
      ASSERT_EQ(poll(&hung_up, 1, 0), 1);
      EXPECT_TRUE(hung_up.revents & POLLHUP);
      break;
    }
    ++delivered;
    // Delivered: in the service's socket now, without a loop turn.
    int waiting = 0;
    ASSERT_EQ(ioctl(pair.second.get(), SIOCINQ, &waiting), 0);
    ASSERT_GT(waiting, 0) << "delivery " << delivered << " waits in the broker";
    ASSERT_LT(delivered, 1000000u) << "the service's socket never fills";
  }
  if (geteuid() == 0) {
    EXPECT_GE(delivered, kMaxPendingConnects);
  }
  // Nothing was left to go later.
  OneTurn(loop);
  wire::ReceiveBuffer buffer;
  size_t received = 0;
  for (;;) {
    ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> datagram,
                         wire::ReceiveDatagram(pair.second.get(), buffer));
    if (!datagram.has_value()) break;
    ++received;
  }
  EXPECT_EQ(received, delivered);
}

// A service's queue holds only replies to its own requests, and stays out
// of the fds that all clients' queues together may hold
// (Limits::max_queued_fds_total): a service that does not read must not
// get a client disconnected as if that client did not read, nor be
// disconnected itself (the host could not reach it again). Here the
// service's socket is full and three grants wait in its queue, over the
// total of 2; a client's grant in the same loop turn is delivered.
TEST_F(BrokerLoopTest, AServicesQueueTakesNothingFromTheClientsFdTotal) {
  ASSERT_NO_FATAL_FAILURE(SetMemoryPolicy());
  Limits limits;
  limits.max_queued_fds_total = 2;
  BrokerLoop loop(handler_, audit_, stats_, limits);

  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(pair.first.get(), F_SETFL, O_NONBLOCK), 0);  // as the host makes it
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(uint64_t service_id,
                       loop.AddServiceConnection(std::move(pair.first), service));
  // Filled with datagrams without fds until it takes no more, then three
  // grants, which stay in the broker's queue.
  size_t filled = 0;
  for (;;) {
    Answer filler;
    filler.words = kj::heapArray<capnp::word>(128);
    std::fill(filler.words.begin(), filler.words.end(), capnp::word());
    if (!loop.Deliver(service_id, std::move(filler))) break;
    ASSERT_LT(++filled, 1000000u) << "the service's socket never fills";
  }
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(loop.Send(service_id, Grant(id)));

  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(Listen(listener));
  if (!listener.valid()) GTEST_SKIP() << "this kernel cannot refuse fds on a socket";
  ASSERT_OK_AND_ASSIGN(UniqueFd client, wire::ConnectSeqpacket(dir_.Join("s")));
  ASSERT_EQ(testing::RawSend(client.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  ASSERT_EQ(testing::RawSend(client.get(), testing::AcquireBytes(2, "m")), 0);

  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  wire::ReceiveBuffer buffer;
  std::optional<wire::Datagram> grant;
  bool hung_up = false;
  int turns = 0;
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    pollfd readable{client.get(), POLLIN, 0};
    while (!grant && !hung_up && poll(&readable, 1, 0) == 1) {
      absl::StatusOr<std::optional<wire::Datagram>> datagram =
          wire::ReceiveDatagram(client.get(), buffer);
      if (!datagram.ok() || !datagram->has_value()) {
        hung_up = true;
        break;
      }
      capnp::FlatArrayMessageReader reader((*datagram)->words);
      if (reader.getRoot<schema::Reply>().getId() == 2) grant = std::move(*datagram);
    }
    // Done once the grant is in or the client was hung up on; a safety
    // net of turns, never a wait.
    return grant.has_value() || hung_up || ++turns > 1000;
  }));
  ASSERT_FALSE(hung_up) << "the client was disconnected for the service's queue";
  ASSERT_TRUE(grant.has_value()) << "the grant never came";
  capnp::FlatArrayMessageReader reader(grant->words);
  auto reply = reader.getRoot<schema::Reply>();
  ASSERT_TRUE(reply.isGranted()) << (reply.isError() ? reply.getError().getMessage().cStr() : "");
  EXPECT_EQ(grant->fds.size(), 1u);
  // The service is still served: what its socket held can be read.
  int waiting = 0;
  ASSERT_EQ(ioctl(pair.second.get(), SIOCINQ, &waiting), 0);
  EXPECT_GT(waiting, 0);
}

// Every reply waits in its connection's queue until the end of the loop
// turn, a reply to a client that reads everything included: that is not
// holding anything. Two clients that read ask for a grant in one turn,
// with a budget of one queued fd for all clients: the first grant fills
// it, and the second would go over. The first can go out at once, which
// makes room: both get their grants, and nobody is disconnected.
TEST_F(BrokerLoopTest, AReplyNotYetSentThisTurnDoesNotGetItsClientDisconnected) {
  ASSERT_NO_FATAL_FAILURE(SetMemoryPolicy());
  Limits limits;
  limits.max_queued_fds_total = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(Listen(listener));
  if (!listener.valid()) GTEST_SKIP() << "this kernel cannot refuse fds on a socket";
  // Both requests wait before the loop runs: the loop reads both hellos in
  // one turn, and both acquires in the next.
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(UniqueFd client, wire::ConnectSeqpacket(dir_.Join("s")));
    ASSERT_EQ(testing::RawSend(client.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)),
              0);
    ASSERT_EQ(testing::RawSend(client.get(), testing::AcquireBytes(2, "m")), 0);
    clients.push_back(std::move(client));
  }

  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  wire::ReceiveBuffer buffer;
  std::vector<size_t> granted_fds(clients.size(), 0);
  std::vector<bool> answered(clients.size(), false);
  bool hung_up = false;
  int turns = 0;
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    for (size_t i = 0; i < clients.size(); ++i) {
      pollfd readable{clients[i].get(), POLLIN, 0};
      while (!answered[i] && !hung_up && poll(&readable, 1, 0) == 1) {
        absl::StatusOr<std::optional<wire::Datagram>> datagram =
            wire::ReceiveDatagram(clients[i].get(), buffer);
        if (!datagram.ok() || !datagram->has_value()) {
          hung_up = true;
          break;
        }
        capnp::FlatArrayMessageReader reader((*datagram)->words);
        auto reply = reader.getRoot<schema::Reply>();
        if (reply.getId() != 2) continue;  // the hello's
        answered[i] = true;
        if (reply.isGranted()) granted_fds[i] = (*datagram)->fds.size();
      }
    }
    // A safety net of turns, never a wait.
    return hung_up || (answered[0] && answered[1]) || ++turns > 1000;
  }));
  EXPECT_FALSE(hung_up) << "a client that reads was disconnected";
  EXPECT_EQ(granted_fds, (std::vector<size_t>{1, 1}));
}

// A connection is served one request a turn (kDatagramsPerWakeup in
// broker_loop.cc), so a client with hundreds of requests waiting does not
// make another wait for all of them. The chatty client's socket is filled
// with requests (each a denial, which the broker counts), then the other
// asks for status once: its reply says how many denials the broker had
// counted when it answered, that is how many of the chatty client's
// requests went first. Nothing here depends on timing: the loop runs in
// this thread, and the callback sends between its turns.
TEST_F(BrokerLoopTest, AChattyClientDoesNotMakeAnotherWaitForAllItsRequests) {
  constexpr uint64_t kMaxRequests = 1000;
  // Room in the chatty client's queue for every reply (a few hundred
  // bytes each): a loop that answered all its requests at once fails on
  // the order below, not on a disconnect.
  Limits limits;
  limits.max_queued_replies = kMaxRequests;
  limits.max_queued_bytes = kMaxRequests * 4096;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd listener;
  // Sends no fds: runs on kernels that cannot refuse them too.
  ASSERT_NO_FATAL_FAILURE(
      Listen(listener, /*pass_credentials=*/false, /*backlog=*/8, FdRefusal::kWhereSupported));
  ASSERT_OK_AND_ASSIGN(UniqueFd chatty, wire::ConnectSeqpacket(dir_.Join("s")));
  ASSERT_OK_AND_ASSIGN(UniqueFd other, wire::ConnectSeqpacket(dir_.Join("s")));
  for (int client : {chatty.get(), other.get()}) {
    ASSERT_EQ(testing::RawSend(client, testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  }

  uint64_t sent = 0;  // the chatty client's requests: ids 2 to sent + 1
  int fill_errno = 0;  // what stopped the filling: EAGAIN, its socket full
  uint64_t chatty_answered = 0;
  int hellos = 0;
  int other_send_errno = 0;
  std::optional<uint64_t> denials_before_other;  // as the other's status says
  bool hung_up = false;
  int turns = 0;
  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    hung_up |= !ReadWaitingReplies(chatty.get(), [&](schema::Reply::Reader reply) {
      if (reply.isHello()) {
        ++hellos;
      } else {
        ++chatty_answered;
      }
    });
    hung_up |= !ReadWaitingReplies(other.get(), [&](schema::Reply::Reader reply) {
      if (reply.isHello()) ++hellos;
      if (reply.isStatus()) denials_before_other = reply.getStatus().getDenials();
    });
    if (hellos == 2 && sent == 0 && fill_errno == 0) {
      // All of the chatty client's requests wait in its socket before the
      // other sends its one.
      while (sent < kMaxRequests &&
             (fill_errno = testing::RawSend(chatty.get(), testing::AcquireBytes(sent + 2, "absent"),
                                            {}, MSG_DONTWAIT)) == 0) {
        ++sent;
      }
      other_send_errno = testing::RawSend(other.get(), testing::StatusBytes(2));
    }
    const bool done = denials_before_other.has_value() && chatty_answered == sent;
    // A safety net of turns, never a wait.
    return hung_up || other_send_errno != 0 || done || ++turns > 4 * static_cast<int>(kMaxRequests);
  }));
  ASSERT_FALSE(hung_up) << "a client that reads its replies was disconnected";
  ASSERT_EQ(other_send_errno, 0) << std::strerror(other_send_errno);
  ASSERT_TRUE(fill_errno == 0 || fill_errno == EAGAIN) << std::strerror(fill_errno);
  // Enough to tell a turn's share from all of them.
  ASSERT_GE(sent, 64u) << "the chatty client's socket took too few requests";
  ASSERT_TRUE(denials_before_other.has_value()) << "the other client was never answered";
  EXPECT_EQ(chatty_answered, sent);
  // One of the chatty client's at most, in the turn that read the other's
  // request; a few more would still be fair, all of them (or the 64 a
  // connection's queue and socket hold) is not.
  EXPECT_LE(*denials_before_other, 8u)
      << "the other client's request waited for " << *denials_before_other << " of the "
      << sent << " requests the chatty client had sent before it";
}

// Connections accepted a turn are bounded (kAcceptsPerWakeup in
// broker_loop.cc), so clients that keep connecting do not keep the loop
// from the connections it has. An admitted client asks for status while
// a hundred connections wait in the listener's backlog: its reply says
// how many connections the broker had when it answered, and most of the
// flood must still be waiting then. Nothing here depends on timing: the
// loop runs in this thread, and the callback connects between its turns.
TEST_F(BrokerLoopTest, AConnectFloodDoesNotHoldUpAnAdmittedClientsRequest) {
  constexpr uint32_t kFlood = 100;
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  UniqueFd listener;
  // Sends no fds: runs on kernels that cannot refuse them too.
  ASSERT_NO_FATAL_FAILURE(
      Listen(listener, /*pass_credentials=*/false, kFlood + 8, FdRefusal::kWhereSupported));
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(dir_.Join("s")));
  ASSERT_OK_AND_ASSIGN(UniqueFd client, wire::ConnectSeqpacket(dir_.Join("s")));
  ASSERT_EQ(testing::RawSend(client.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)),
            0);

  std::vector<UniqueFd> flood;
  int connect_errno = 0;
  int send_errno = 0;
  bool hello_done = false;
  std::optional<uint32_t> connections_when_answered;  // as its status says
  bool hung_up = false;
  int turns = 0;
  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    hung_up |= !ReadWaitingReplies(client.get(), [&](schema::Reply::Reader reply) {
      if (reply.isHello()) hello_done = true;
      if (reply.isStatus()) connections_when_answered = reply.getStatus().getConnections();
    });
    if (hello_done && flood.empty()) {
      // The whole flood waits in the backlog (a connect to a Unix socket
      // completes when it is queued there) before the request is sent.
      while (flood.size() < kFlood) {
        UniqueFd made(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!made.valid() || connect(made.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                                     address.length) != 0) {
          connect_errno = errno;
          return true;
        }
        flood.push_back(std::move(made));
      }
      send_errno = testing::RawSend(client.get(), testing::StatusBytes(2));
    }
    const bool done = connections_when_answered.has_value() && stats_.connections == 1 + kFlood;
    // A safety net of turns, never a wait.
    return hung_up || send_errno != 0 || done || ++turns > 1000;
  }));
  ASSERT_EQ(connect_errno, 0) << std::strerror(connect_errno);
  ASSERT_EQ(send_errno, 0) << std::strerror(send_errno);
  ASSERT_FALSE(hung_up) << "the admitted client was disconnected";
  ASSERT_TRUE(connections_when_answered.has_value()) << "the admitted client was never answered";
  EXPECT_EQ(stats_.connections, 1 + kFlood) << "the flood was not all admitted in the end";
  // The client and the connections of one accepting turn, at most; a few
  // turns' worth would still be fair, the whole flood is not.
  EXPECT_LT(*connections_when_answered, 1 + kFlood / 2)
      << "the admitted client's request waited until the broker had "
      << *connections_when_answered << " connections, of the " << 1 + kFlood << " waiting";
}

// A service host that records the connections it is told are closed, and
// does nothing else.
class ClosedConnections : public ReportingDirectory {
 public:
  void ConnectionLost(uint64_t id) override { lost.push_back(id); }
  void ClientGone(uint64_t id, absl::string_view why) override {
    gone.push_back(id);
    why_gone.emplace_back(why);
  }

  std::vector<uint64_t> lost;  // ConnectionLost
  std::vector<uint64_t> gone;  // ClientGone
  std::vector<std::string> why_gone;
};

// A hosted service may connect to another service, and its connects wait
// under its broker connection's id as a client's do: however that
// connection closes (the service hangs up, or the host closes it when the
// service stops), the host is told, so that they are withdrawn and their
// places freed. Only a close the loop made on its own is a lost service.
TEST_F(BrokerLoopTest, AServicesConnectionThatClosesIsReportedAsAClientGone) {
  ClosedConnections host;
  handler_.SetServiceDirectory(&host);
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(auto stopped, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(stopped.first.get(), F_SETFL, O_NONBLOCK), 0);  // as the host makes it
  ASSERT_OK_AND_ASSIGN(uint64_t stopped_id,
                       loop.AddServiceConnection(std::move(stopped.first), service));
  ASSERT_OK_AND_ASSIGN(auto hung_up, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(hung_up.first.get(), F_SETFL, O_NONBLOCK), 0);
  ASSERT_OK_AND_ASSIGN(uint64_t hung_up_id,
                       loop.AddServiceConnection(std::move(hung_up.first), service));

  loop.CloseConnection(stopped_id);  // as the host does when the service stops
  EXPECT_EQ(host.gone, std::vector<uint64_t>{stopped_id});
  EXPECT_TRUE(host.lost.empty()) << "the host's own close came back as a lost service";

  hung_up.second.reset();
  OneTurn(loop);
  EXPECT_EQ(host.gone, (std::vector<uint64_t>{stopped_id, hung_up_id}));
  EXPECT_EQ(host.lost, std::vector<uint64_t>{hung_up_id});
  EXPECT_EQ(host.why_gone, (std::vector<std::string>{
                               "the client, a hosted service, stopped or was stopped",
                               "the client hung up"}));
  handler_.SetServiceDirectory(nullptr);
}

// A connection the broker closes is reported with the reason, for the
// not-delivered lines of its waiting connects: here a service that does
// not read, whose queue overflows.
TEST_F(BrokerLoopTest, AConnectionTheBrokerClosesIsReportedWithWhy) {
  ClosedConnections host;
  handler_.SetServiceDirectory(&host);
  Limits limits;
  limits.max_queued_replies = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(pair.first.get(), F_SETFL, O_NONBLOCK), 0);  // as the host makes it
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(uint64_t id, loop.AddServiceConnection(std::move(pair.first), service));
  size_t filled = 0;
  for (;;) {
    Answer filler;
    filler.words = kj::heapArray<capnp::word>(128);
    std::fill(filler.words.begin(), filler.words.end(), capnp::word());
    if (!loop.Deliver(id, std::move(filler))) break;
    ASSERT_LT(++filled, 1000000u) << "the service's socket never fills";
  }
  ASSERT_TRUE(loop.Send(id, Grant(1)));
  EXPECT_FALSE(loop.Send(id, Grant(2)));
  EXPECT_EQ(host.gone, std::vector<uint64_t>{id});
  EXPECT_EQ(host.why_gone, std::vector<std::string>{
                               "the broker closed the client's connection: it did not read "
                               "its replies, and its queue was full"});
  handler_.SetServiceDirectory(nullptr);
}

// A grant on record that the loop drops unsent, with its connection, gets
// a second line saying so and why, with its request and principal: the
// grant queued on a connection that does not read, and the one whose
// reply found the queue full.
TEST_F(BrokerLoopTest, GrantsDroppedWithTheirConnectionAreOnRecordAsNotDelivered) {
  Limits limits;
  limits.max_queued_replies = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd peer;
  const uint64_t id = AddFullServiceConnection(loop, peer);
  ASSERT_NE(id, 0u);
  ASSERT_TRUE(loop.Send(id, Grant(1)));
  ASSERT_FALSE(loop.Send(id, Grant(2)));
  Answer status;  // a reply that hands out nothing: no line when dropped
  status.words = kj::heapArray<capnp::word>(8);
  std::fill(status.words.begin(), status.words.end(), capnp::word());
  ASSERT_FALSE(loop.Send(id, std::move(status)));
  audit_.FlushAll();
  const std::vector<std::string> lines = NotDeliveredLines();
  ASSERT_EQ(lines.size(), 2u) << ReadAudit();
  for (const std::string& line : lines) {
    EXPECT_THAT(line, ::testing::HasSubstr(R"("request":{"kind":"acquire","capability":"m","access":"readWrite"},"decision":"denied","principal":"me","reason":"not delivered: the broker closed the client's connection: it did not read its replies, and its queue was full")"));
  }
  EXPECT_EQ(stats_.grants, 2u);
  EXPECT_EQ(stats_.denials, 2u);
}

// The same for grants of an open beneath that asked to create (with a
// mode) and to truncate: the line saying each was not delivered carries
// the same request as its grant line, so the two can be matched, and the
// grant line says the file was made (it stays: it is not removed once the
// grant is on record). One is dropped with its connection's queue, the
// other as its reply finds the queue full.
TEST_F(BrokerLoopTest, OpensBeneathNotDeliveredAreOnRecordWithTheirRequests) {
  ASSERT_EQ(mkdir(dir_.Join("d").c_str(), 0700), 0);
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(absl::StrCat(R"(( capabilities = [
          ( name = "d", directory = ( path = ")", dir_.Join("d"), R"(", access = readWrite ) ) ],
        services = [ ( name = "svc", command = [ "/bin/true" ], grants = [ "d" ] ) ] ))"),
                  "t.capnp"));
  ASSERT_OK(handler_.SetPolicy(std::move(policy)));
  Limits limits;
  limits.max_queued_replies = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd peer;
  const uint64_t id = AddFullServiceConnection(loop, peer);
  ASSERT_NE(id, 0u);
  Session session;
  session.identity.service = "svc";
  session.hello_done = true;
  auto open_beneath = [&](uint64_t request_id, const char* path) {
    capnp::MallocMessageBuilder request_message, reply_message;
    auto request = request_message.initRoot<schema::Request>();
    request.setId(request_id);
    auto open = request.initOpenBeneath();
    open.setDirectory("d");
    open.setPath(path);
    open.setAccess(schema::Access::WRITE);
    open.setCreate(true);
    open.setMode(0640);
    open.setTruncate(true);
    Answer answer;
    answer.outcome =
        handler_.Handle(session, request.asReader(), reply_message.initRoot<schema::Reply>());
    answer.words = std::move(wire::Flatten(reply_message)).value();
    answer.id = request_id;
    return answer;
  };
  ASSERT_TRUE(loop.Send(id, open_beneath(1, "one")));
  ASSERT_FALSE(loop.Send(id, open_beneath(2, "two")));
  audit_.FlushAll();

  std::map<std::string, std::string> granted, not_delivered;
  for (absl::string_view text : absl::StrSplit(ReadAudit(), '\n', absl::SkipEmpty())) {
    ASSERT_OK_AND_ASSIGN(auto line, testing::FlattenJsonObject(text));
    if (line["request.kind"] != "openBeneath") continue;
    std::string request;
    for (const auto& [key, value] : line) {
      if (absl::StartsWith(key, "request.")) absl::StrAppend(&request, key, "=", value, " ");
    }
    if (line["event"] == "grant") {
      EXPECT_EQ(line["created"], "true") << text;
      granted[line["request.path"]] = request;
    } else if (absl::StartsWith(line["reason"], "not delivered: ")) {
      not_delivered[line["request.path"]] = request;
    }
  }
  ASSERT_EQ(granted.size(), 2u) << ReadAudit();
  EXPECT_EQ(not_delivered, granted) << ReadAudit();
  EXPECT_THAT(granted["one"], ::testing::AllOf(::testing::HasSubstr("request.create=true"),
                                               ::testing::HasSubstr("request.mode=0640"),
                                               ::testing::HasSubstr("request.truncate=true")));
  struct stat made;
  EXPECT_EQ(stat(dir_.Join("d/one").c_str(), &made), 0) << "the file made was removed";
}

// A grant whose line a flush lost while Queue made room for it (here:
// sending what a full queue holds) is not on record: when its connection
// is then dropped, it is withheld, and gets no line saying it was not
// delivered, which would be the log's only mention of it. Only the grant
// on record that was queued before gets one.
TEST_F(BrokerLoopTest, AGrantWhoseLineWasLostIsNeverOnRecordAsNotDelivered) {
  Limits limits;
  limits.max_queued_replies = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd peer;
  const uint64_t id = AddFullServiceConnection(loop, peer);
  ASSERT_NE(id, 0u);
  Answer first = Grant(1);
  ASSERT_THAT(loop.AuditLinesLost({first.outcome.audit_line}), ::testing::IsEmpty());
  ASSERT_TRUE(loop.Send(id, std::move(first)));
  UniqueFd log(fcntl(audit_fd_.get(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(log.valid());
  BreakAuditLog();
  // Its queue is full: Queue sends first, which flushes (and loses) the
  // line of grant 2, then finds the socket full and drops the connection.
  ASSERT_FALSE(loop.Send(id, Grant(2)));
  ASSERT_EQ(dup3(log.get(), audit_fd_.get(), O_CLOEXEC), audit_fd_.get());  // mended
  audit_.FlushAll();
  const std::vector<std::string> lines = NotDeliveredLines();
  ASSERT_EQ(lines.size(), 1u) << ReadAudit();
  EXPECT_EQ(stats_.grants, 1u);
  EXPECT_EQ(stats_.denials, 2u);  // grant 2 withheld, grant 1 not delivered
}

// First, with a working log, a truncating open empties its file. Then the
// reviewer's case: the audit log on a pipe whose reader is gone, so that no
// line can be written. A grant whose open would empty a file is
// withheld as any other, and leaves no trace: the file keeps its content
// (the open truncates only once the line is written). Such a log can never
// be written again, and the loop stops after that turn. Then, on a full
// disk (ENOSPC, which may clear: the loop goes on), the same for the
// policy's truncate, and for a file an open made, which is removed again.
TEST_F(BrokerLoopTest, AGrantNotOnRecordEmptiesNoFileAndLeavesNoneMade) {
  struct sigaction ignore = {}, previous = {};
  ignore.sa_handler = SIG_IGN;  // as the broker does: EPIPE, not a signal
  ASSERT_EQ(sigaction(SIGPIPE, &ignore, &previous), 0);
  ASSERT_EQ(mkdir(dir_.Join("d").c_str(), 0700), 0);
  const std::string data = dir_.WriteFile("d/data", "8 bytes.");
  const std::string file = dir_.WriteFile("f", "8 bytes.");
  ASSERT_OK_AND_ASSIGN(
      Policy policy,
      ParsePolicy(absl::StrCat(R"(( capabilities = [
          ( name = "d", directory = ( path = ")", dir_.Join("d"), R"(", access = readWrite ) ),
          ( name = "f", file = ( path = ")", file, R"(", access = write, truncate = true ) ),
          ( name = "n", file = ( path = ")", dir_.Join("n"), R"(", access = write, create = true ) ) ],
        services = [ ( name = "svc", command = [ "/bin/true" ], grants = [ "d", "f", "n" ] ) ] ))"),
                  "t.capnp"));
  ASSERT_OK(handler_.SetPolicy(std::move(policy)));
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(pair.first.get(), F_SETFL, O_NONBLOCK), 0);
  Identity service;
  service.service = "svc";
  ASSERT_OK(loop.AddServiceConnection(std::move(pair.first), service).status());
  wire::ReceiveBuffer buffer;
  absl::Status served;
  // Sends the request `fill` fills in, as request 1, runs one turn (its
  // outcome in `served`) and returns the reply's error (empty for a
  // grant) and how many fds it carried.
  auto ask = [&](auto fill) -> std::pair<std::string, size_t> {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    request.setId(1);
    fill(request);
    EXPECT_EQ(testing::RawSend(pair.second.get(), testing::Encode(message)), 0);
    UniqueFd listener(eventfd(0, EFD_CLOEXEC));  // never readable
    UniqueFd control(eventfd(1, EFD_CLOEXEC));   // readable at once
    served = loop.Serve(listener.get(), control.get(), [] { return true; });
    absl::StatusOr<std::optional<wire::Datagram>> datagram =
        wire::ReceiveDatagram(pair.second.get(), buffer);
    if (!datagram.ok() || !datagram->has_value()) return {"no reply", 0};
    capnp::FlatArrayMessageReader reader((*datagram)->words);
    auto reply = reader.getRoot<schema::Reply>();
    return {reply.isError() ? reply.getError().getMessage().cStr() : "",
            (*datagram)->fds.size()};
  };
  ASSERT_EQ(fcntl(pair.second.get(), F_SETFL, O_NONBLOCK), 0);  // a missing reply fails
  ask([](schema::Request::Builder r) { r.initHello().setVersion(schema::PROTOCOL_VERSION); });
  // An openBeneath for write of `path` in "d", truncating or creating it.
  auto open_beneath = [&](const char* path, bool truncate, bool create) {
    return ask([&](schema::Request::Builder r) {
      auto open = r.initOpenBeneath();
      open.setDirectory("d");
      open.setPath(path);
      open.setAccess(schema::Access::WRITE);
      open.setTruncate(truncate);
      open.setCreate(create);
    });
  };
  // With the log working, the same open empties the file once its line is
  // written (the loop completes what the open left to do).
  const std::string emptied = dir_.WriteFile("d/emptied", "8 bytes.");
  auto recorded = open_beneath("emptied", true, false);
  EXPECT_EQ(recorded.first, "");
  EXPECT_EQ(recorded.second, 1u);
  EXPECT_EQ(testing::ReadWholeFile(emptied), "") << "a recorded truncate left the file as it was";

  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd(pipe_fds[0]).reset();  // the reader is gone
  UniqueFd pipe_writer(pipe_fds[1]);
  ASSERT_EQ(dup3(pipe_writer.get(), audit_fd_.get(), O_CLOEXEC), audit_fd_.get());
  const std::string withheld = "could not write this grant's audit line";
  auto truncating = open_beneath("data", true, false);
  EXPECT_THAT(truncating.first, ::testing::HasSubstr(withheld));
  EXPECT_EQ(truncating.second, 0u);
  EXPECT_EQ(testing::ReadWholeFile(data), "8 bytes.") << "emptied, with no grant on record";
  EXPECT_THAT(served, StatusIs(absl::StatusCode::kUnavailable, ::testing::HasSubstr("no reader")));

  audit_ = audit::AuditLog(audit_fd_.get());  // a log of its own: not one whose reader left
  BreakAuditLog();
  auto creating = open_beneath("new", false, true);
  EXPECT_THAT(creating.first, ::testing::HasSubstr(withheld));
  for (const char* name : {"f", "n"}) {
    auto acquired = ask([&](schema::Request::Builder r) {
      r.initAcquire().setName(name);
    });
    EXPECT_THAT(acquired.first, ::testing::HasSubstr(withheld)) << name;
    EXPECT_EQ(acquired.second, 0u) << name;
  }
  EXPECT_OK(served);
  EXPECT_EQ(testing::ReadWholeFile(file), "8 bytes.") << "emptied, with no grant on record";
  struct stat st;
  EXPECT_NE(stat(dir_.Join("d/new").c_str(), &st), 0) << "made, with no grant on record";
  EXPECT_NE(stat(dir_.Join("n").c_str(), &st), 0) << "made, with no grant on record";
  EXPECT_EQ(stats_.grants, 1u);  // the first, on record
  ASSERT_EQ(sigaction(SIGPIPE, &previous, nullptr), 0);
}

// A reply that went out is delivered even when a later send on the same
// connection fails and closes it: only the grant that did not go gets the
// line. Here the peer starts refusing fds after the first reply (which
// carries none) is queued, so the second one's send fails with EPERM.
TEST_F(BrokerLoopTest, AGrantSentBeforeALaterSendFailedIsNotCalledUndelivered) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_EQ(fcntl(pair.first.get(), F_SETFL, O_NONBLOCK), 0);  // as the host makes it
  Identity service;
  service.service = "svc";
  ASSERT_OK_AND_ASSIGN(uint64_t id, loop.AddServiceConnection(std::move(pair.first), service));
  absl::Status refusing = wire::RefuseFds(pair.second.get());
  if (refusing.code() == absl::StatusCode::kUnimplemented) {
    GTEST_SKIP() << "this kernel cannot refuse fds on a socket";
  }
  ASSERT_OK(refusing);
  Answer first = Grant(1);
  first.outcome.fds.clear();  // as a shared memfd's grant, its fd aside
  ASSERT_TRUE(loop.Send(id, std::move(first)));
  ASSERT_TRUE(loop.Send(id, Grant(2)));
  loop.SendWhatIsQueued();
  audit_.FlushAll();
  wire::ReceiveBuffer buffer;
  ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> sent,
                       wire::ReceiveDatagram(pair.second.get(), buffer));
  ASSERT_TRUE(sent.has_value()) << "the first grant did not go out";
  const std::vector<std::string> lines = NotDeliveredLines();
  ASSERT_EQ(lines.size(), 1u) << ReadAudit();
  EXPECT_THAT(lines[0], ::testing::HasSubstr("its socket failed"));
}

// At the stop, what a full socket did not take never goes: its grants get
// the line that says so, for the broker's last flush.
TEST_F(BrokerLoopTest, GrantsLeftQueuedAtTheStopAreOnRecordAsNotDelivered) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  UniqueFd peer;
  const uint64_t id = AddFullServiceConnection(loop, peer);
  ASSERT_NE(id, 0u);
  ASSERT_TRUE(loop.Send(id, Grant(1)));
  loop.SendWhatIsQueued();
  audit_.FlushAll();
  const std::vector<std::string> lines = NotDeliveredLines();
  ASSERT_EQ(lines.size(), 1u) << ReadAudit();
  EXPECT_THAT(lines[0], ::testing::HasSubstr(R"("principal":"me","reason":"not delivered: the broker stopped before the client's socket took the reply")"));
}

// A socket from systemd may have taken connections, and their datagrams,
// before the broker turned fd-passing off on it (a connection takes the
// option when it is made). The loop reads a datagram of such a connection
// only after a look that drops nothing, and sets aside the connection whose
// datagram carries fds: it never drops a client's fd (here a pipe's write
// end; with a socket lingering on close, that would stall the loop).
// Connections of the same kind without fds are served, even when the
// socket's unit passed credentials (PassCredentials=), which makes every
// datagram come with a control message until the option is off.
TEST_F(BrokerLoopTest, FdsSentBeforeTheListenerRefusedThemAreNeverDroppedHere) {
  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(ListenTakingFds(listener, /*pass_credentials=*/true));
  ASSERT_OK_AND_ASSIGN(UniqueFd with_fds, wire::ConnectSeqpacket(dir_.Join("s")));
  ASSERT_OK_AND_ASSIGN(UniqueFd without, wire::ConnectSeqpacket(dir_.Join("s")));
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  ASSERT_EQ(testing::RawSend(with_fds.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION),
                             {write_end.get()}),
            0);
  write_end.reset();  // the datagram holds the only reference
  ASSERT_EQ(testing::RawSend(without.get(), testing::HelloBytes(2, schema::PROTOCOL_VERSION)),
            0);
  // As Listener::FromSystemd does when it takes such a socket.
  absl::Status refused = wire::RefuseFds(listener.get());
  if (refused.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << refused.message();
  ASSERT_OK(refused);
  ASSERT_OK(wire::StopCredentialMessages(listener.get()));

  BrokerLoop loop(handler_, audit_, stats_, Limits());
  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  int turns = 0;
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    pollfd answered{without.get(), POLLIN, 0};
    // Done once `without` is answered and `with_fds` is no longer served;
    // a safety net of turns, never a wait.
    return (poll(&answered, 1, 0) == 1 && stats_.connections_total == 2 &&
            stats_.connections == 1) ||
           ++turns > 1000;
  }));
  ASSERT_LE(turns, 1000) << "the loop did not get there";
  pollfd p{read_end.get(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the loop dropped the client's fd";
  wire::ReceiveBuffer buffer;
  ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> reply,
                       wire::ReceiveDatagram(without.get(), buffer));
  ASSERT_TRUE(reply.has_value());
  capnp::FlatArrayMessageReader reader(reply->words);
  EXPECT_EQ(reader.getRoot<schema::Reply>().getId(), 2u);
  // Nothing came back on the connection set aside: it is never read again.
  pollfd q{with_fds.get(), POLLIN, 0};
  EXPECT_EQ(poll(&q, 1, 0), 0);
}

// A connection made before the listener refused fds, whose client sent a
// request without fds and hung up, holds nothing: it is closed when it
// ends, not kept open for good as one that could hold a client's fd. Its
// end of stream reads as no datagram (recvmsg returns 0 for an empty
// datagram and for end of stream alike: wire::PeekDatagram tells them
// apart).
TEST_F(BrokerLoopTest, AConnectionMadeBeforeFdsWereRefusedThatHangsUpIsClosed) {
  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(ListenTakingFds(listener));
  {
    ASSERT_OK_AND_ASSIGN(UniqueFd early, wire::ConnectSeqpacket(dir_.Join("s")));
    ASSERT_EQ(testing::RawSend(early.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)),
              0);
  }
  // As Listener::FromSystemd does when it takes such a socket.
  absl::Status refused = wire::RefuseFds(listener.get());
  if (refused.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << refused.message();
  ASSERT_OK(refused);
  const int before = testing::CountOpenFds();
  ::testing::internal::CaptureStderr();
  {
    BrokerLoop loop(handler_, audit_, stats_, Limits());
    UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
    int turns = 0;
    ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
      // Done once the connection was taken and has ended; a safety net of
      // turns, never a wait.
      return (stats_.connections_total == 1 && stats_.connections == 0) || ++turns > 1000;
    }));
    ASSERT_LE(turns, 1000) << "the connection did not end";
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(testing::CountOpenFds(), before) << "the connection was kept open:\n" << err;
  EXPECT_THAT(err, ::testing::Not(::testing::HasSubstr("keeping a connection open")));
}

// The case PeekDatagram's SO_PASSCRED peek is for: a connection made
// before the listener refused fds whose client sent an empty datagram
// (SOCK_SEQPACKET allows them), then one with an fd, and hung up. recvmsg
// returns 0 for the empty datagram as for end of stream, and poll shows
// the hang-up either way; taken for end of stream, the connection would be
// closed and the client's fd behind it dropped here. It is set aside: kept
// open, never read again.
TEST_F(BrokerLoopTest, AnEmptyDatagramBeforeFdsIsNotTakenForEndOfStream) {
  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(ListenTakingFds(listener));
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  {
    ASSERT_OK_AND_ASSIGN(UniqueFd early, wire::ConnectSeqpacket(dir_.Join("s")));
    ASSERT_EQ(testing::RawSend(early.get(), {}), 0);  // an empty datagram
    ASSERT_EQ(testing::RawSend(early.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION),
                               {write_end.get()}),
              0);
  }
  write_end.reset();  // the datagram holds the only reference
  // As Listener::FromSystemd does when it takes such a socket.
  absl::Status refused = wire::RefuseFds(listener.get());
  if (refused.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << refused.message();
  ASSERT_OK(refused);
  ::testing::internal::CaptureStderr();
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  int turns = 0;
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    // Done once the connection was taken and is no longer served; a safety
    // net of turns, never a wait.
    return (stats_.connections_total == 1 && stats_.connections == 0) || ++turns > 1000;
  }));
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_LE(turns, 1000) << "the connection was not taken, or is still served";
  pollfd p{read_end.get(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the loop dropped the client's fd:\n" << err;
  EXPECT_THAT(err, ::testing::HasSubstr("keeping a connection open, unread, for good"));
}

// A socket from systemd whose unit says AcceptFileDescriptors=no and
// PassCredentials=yes: a connection made before the broker turned the
// credentials off (the one whose connect started the broker) refuses fds
// but still has SO_PASSCRED, which it took from its listener. Its requests
// are served all the same: no control message makes them read as carrying
// fds.
TEST_F(BrokerLoopTest, AConnectionMadeBeforeCredentialsWereTurnedOffIsServed) {
  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(Listen(listener, /*pass_credentials=*/true));
  if (!listener.valid()) GTEST_SKIP() << "this kernel cannot refuse fds on a socket";
  ASSERT_OK_AND_ASSIGN(UniqueFd early, wire::ConnectSeqpacket(dir_.Join("s")));
  ASSERT_EQ(testing::RawSend(early.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  // As Listener::FromSystemd does when it takes the socket.
  ASSERT_OK(wire::StopCredentialMessages(listener.get()));

  BrokerLoop loop(handler_, audit_, stats_, Limits());
  UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
  int turns = 0;
  ASSERT_OK(loop.Serve(listener.get(), control.get(), [&] {
    pollfd answered{early.get(), POLLIN, 0};
    return poll(&answered, 1, 0) == 1 || ++turns > 1000;  // a safety net, never a wait
  }));
  ASSERT_LE(turns, 1000) << "the loop did not answer";
  wire::ReceiveBuffer buffer;
  ASSERT_OK_AND_ASSIGN(std::optional<wire::Datagram> reply,
                       wire::ReceiveDatagram(early.get(), buffer));
  ASSERT_TRUE(reply.has_value());
  capnp::FlatArrayMessageReader reader(reply->words);
  schema::Reply::Reader root = reader.getRoot<schema::Reply>();
  EXPECT_EQ(root.getId(), 1u);
  EXPECT_TRUE(root.isHello()) << (root.isError() ? root.getError().getMessage().cStr() : "");
}

// The fd the process's only epoll instance has, or -1 (none, or several).
int OnlyEpollFd() {
  int found = -1;
  for (int fd = 0; fd < 1024; ++fd) {
    char target[64];
    ssize_t n = readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), target, sizeof(target));
    if (n <= 0 || absl::string_view(target, n) != "anon_inode:[eventpoll]") continue;
    if (found >= 0) return -1;
    found = fd;
  }
  return found;
}

// Whether the epoll instance `epoll_fd` watches `fd`, from its fdinfo
// ("tfd: N events: ..." per watched fd). Takes one free fd number.
absl::StatusOr<bool> EpollWatches(int epoll_fd, int fd) {
  UniqueFd file(open(absl::StrCat("/proc/self/fdinfo/", epoll_fd).c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) return ErrnoStatus(errno, "open fdinfo");
  std::string info;
  char chunk[4096];
  for (ssize_t n; (n = read(file.get(), chunk, sizeof(chunk))) != 0;) {
    if (n < 0) return ErrnoStatus(errno, "read fdinfo");
    info.append(chunk, n);
  }
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int watched;
    if (words.size() >= 2 && words[0] == "tfd:" && absl::SimpleAtoi(words[1], &watched) &&
        watched == fd) {
      return true;
    }
  }
  return false;
}

// Whether `fd` was answered with the refusal of a broker out of fds.
bool RefusedForWantOfFds(int fd) {
  wire::ReceiveBuffer buffer;
  absl::StatusOr<std::optional<wire::Datagram>> reply = wire::ReceiveDatagram(fd, buffer);
  if (!reply.ok() || !reply->has_value()) return false;
  capnp::FlatArrayMessageReader reader((*reply)->words);
  schema::Reply::Reader root = reader.getRoot<schema::Reply>();
  return root.isError() && absl::StrContains(root.getError().getMessage().cStr(), "out of fds");
}

// What a turn of a loop at a full fd table (RunAtFullTable) sees.
struct FullTable {
  int listener = -1;
  wire::UnixAddress address;  // the listener's
  int late = -1;              // a socket not connected yet: ConnectLate
  int epoll_fd = -1;          // the loop's
  const Stats* stats = nullptr;
  std::vector<UniqueFd> filler;  // /dev/null, filling the table

  bool ConnectLate() const {
    return connect(late, reinterpret_cast<const sockaddr*>(&address.addr), address.length) == 0;
  }
};

class BrokerLoopFullTableTest : public BrokerLoopTest {
 protected:
  // Runs a loop in a child process whose table (RLIMIT_NOFILE 128) is full,
  // the loop's reserve fd (opened with the loop) included, on a listener that refuses fds (as
  // Listener::FromSystemd makes it) with one client connected before it
  // did and a hello sent: the loop sets that client aside when it takes it
  // (closing it could drop an fd), keeping the reserve's number. The
  // control fd is readable every turn; `on_turn(turn, table)` returns the
  // child's exit code to stop with, or -1 to go on (13 after 1000 turns, a
  // safety net of turns, never a wait). Expects 0; `codes` says what the
  // others mean (10 to 12, 14, 16: the harness or a connect failed).
  void RunAtFullTable(const std::function<int(int, FullTable&)>& on_turn,
                      absl::string_view codes) {
    UniqueFd listener;
    ASSERT_NO_FATAL_FAILURE(ListenTakingFds(listener));
    ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(dir_.Join("s")));
    ASSERT_OK_AND_ASSIGN(UniqueFd early, wire::ConnectSeqpacket(dir_.Join("s")));
    ASSERT_EQ(testing::RawSend(early.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
    absl::Status refused = wire::RefuseFds(listener.get());
    if (refused.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << refused.message();
    ASSERT_OK(refused);
    RunLoopAtFullTable(listener.get(), address, on_turn, codes);
  }

  // Runs a loop on `listener_fd` (reachable at `address`) in a child
  // process whose table (RLIMIT_NOFILE 128) is full, the loop's reserve
  // fd (opened with the loop) included: see RunAtFullTable for
  // `on_turn` and `codes`.
  void RunLoopAtFullTable(int listener_fd, const wire::UnixAddress& address,
                          const std::function<int(int, FullTable&)>& on_turn,
                          absl::string_view codes) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      BrokerLoop loop(handler_, audit_, stats_, Limits());
      UniqueFd control(eventfd(1, EFD_CLOEXEC));
      UniqueFd late(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
      if (!control.valid() || !late.valid()) _exit(10);
      // Nothing reached through `this` once the table is full: UBSan's
      // check of a member access through it needs an fd of its own.
      FullTable table;
      table.listener = listener_fd;
      table.address = address;
      table.late = late.get();
      table.epoll_fd = OnlyEpollFd();
      table.stats = &stats_;
      if (table.epoll_fd < 0) _exit(11);
      rlimit limit{128, 128};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(12);
      for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) {
        table.filler.emplace_back(fd);
      }
      if (table.filler.empty()) _exit(12);
      int turns = 0;
      int code = 13;
      absl::Status served = loop.Serve(table.listener, control.get(), [&] {
        int stop = on_turn(++turns, table);
        if (stop >= 0) code = stop;
        return stop >= 0 || turns > 1000;
      });
      _exit(served.ok() ? code : 16);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << codes;
  }
};

// The loop keeps a reserve fd, freed to take and refuse a connection when
// the table is full. A connection made before the listener refused fds and
// refused at EMFILE is set aside, keeping the number the reserve freed. The
// reserve is taken back once an fd is free again: a client at a full table
// later is still told that the broker is out of fds, instead of waiting
// forever on a listener the loop cannot take from.
TEST_F(BrokerLoopFullTableTest, TheReserveFdComesBackAfterAConnectionIsSetAsideAtEmfile) {
  enum { kSettingAside, kFreed, kLateConnected } step = kSettingAside;
  RunAtFullTable(
      [&](int turn, FullTable& table) {
        if (step == kSettingAside && turn >= 2) {
          // The early client was taken with the reserve's number and set
          // aside (it was not served); the table is full. One number comes
          // free.
          if (table.stats->connections_total != 0) return 17;
          table.filler.pop_back();
          step = kFreed;
        } else if (step == kFreed) {
          // A turn later, the number is the reserve's again, if the loop
          // took it back; if not, this takes it, and the table is full with
          // no reserve. Then a client comes.
          int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
          if (fd >= 0) table.filler.emplace_back(fd);
          if (!table.ConnectLate()) return 14;
          step = kLateConnected;
        } else if (step == kLateConnected) {
          pollfd answered{table.late, POLLIN, 0};
          if (poll(&answered, 1, 0) == 1) return RefusedForWantOfFds(table.late) ? 0 : 15;
        }
        return -1;
      },
      "13: the late client was never answered; 15: not with the refusal; 17: the early "
      "client was served, not set aside");
}

// When the table is full with no reserve (a connection set aside keeps its
// number), the listener stays readable with nothing able to take from it:
// watched, it would wake the loop every turn for nothing, at full CPU, until
// an fd is free. It is taken out of the epoll set, and back in once the
// reserve is: the waiting client is then refused with the reason.
TEST_F(BrokerLoopFullTableTest, AFullTableWithNoReservePausesTheListenerUntilAnFdIsFree) {
  enum { kSettingAside, kLateConnected, kFreed } step = kSettingAside;
  int connected_at = 0;
  RunAtFullTable(
      [&](int turn, FullTable& table) {
        if (step == kSettingAside && turn >= 2) {
          // The early client was taken with the reserve's number and set
          // aside: the table is full, with no reserve. A client comes.
          if (table.stats->connections_total != 0) return 17;
          if (!table.ConnectLate()) return 14;
          step = kLateConnected;
          connected_at = turn;
        } else if (step == kLateConnected && turn >= connected_at + 2) {
          // The next turn reported the listener with the control fd, and
          // the loop found no fd to take the client with.
          table.filler.pop_back();  // a number for reading the fdinfo
          absl::StatusOr<bool> watched = EpollWatches(table.epoll_fd, table.listener);
          table.filler.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
          if (!watched.ok()) return 18;
          if (*watched) return 19;
          table.filler.pop_back();  // an fd is free: the reserve comes back
          step = kFreed;
        } else if (step == kFreed) {
          pollfd answered{table.late, POLLIN, 0};
          if (poll(&answered, 1, 0) == 1) return RefusedForWantOfFds(table.late) ? 0 : 15;
        }
        return -1;
      },
      "19: the listener was still watched at a full table with no reserve; 13: the late "
      "client was never answered; 15: not with the refusal; 17: the early client was served");
}

// An accept error other than for want of fds (ENOMEM, ENOBUFS, a security
// module's EPERM) leaves the listener readable while it lasts: watched,
// level-triggered, it woke the loop every turn at full CPU, the log capped
// at 20 lines a second. It is paused, and tried again every 100 ms
// (kPausedListenerRetryMs). Here the error lasts: the "listener" is a
// socket that does not listen, a datagram waiting in it (readable; accept4
// says EINVAL). The loop runs one second (a timer as its control fd): a
// second try needs the loop scheduled once in the 900 ms after the first,
// which a loaded machine still gives; more than 11 cannot happen with the
// 100 ms pause, whatever the load.
TEST_F(BrokerLoopTest, AnAcceptErrorThatLastsPausesTheListener) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  const uint8_t byte = 0;
  ASSERT_EQ(testing::RawSend(pair.second.get(), absl::MakeConstSpan(&byte, 1)), 0);
  UniqueFd control(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  ASSERT_TRUE(control.valid());
  itimerspec at{};
  at.it_value.tv_sec = 1;
  ASSERT_EQ(timerfd_settime(control.get(), 0, &at, nullptr), 0);
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  ::testing::internal::CaptureStderr();
  absl::Status served = loop.Serve(pair.first.get(), control.get(), [] { return true; });
  loop.LogSuppressedPeerLines();
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(served);
  const std::string line = absl::StrCat("capbrokerd: accept4: ", std::strerror(EINVAL),
                                        "; not accepting connections for 100 ms\n");
  size_t tries = 0;
  for (size_t at = err.find(line); at != std::string::npos; at = err.find(line, at + 1)) ++tries;
  EXPECT_GE(tries, 2u) << "not tried again after 100 ms:\n" << err;
  EXPECT_LE(tries, 11u) << "tried more often than every 100 ms:\n" << err;
  EXPECT_THAT(err, ::testing::Not(::testing::HasSubstr("suppressed")));
}

// At a full table, accept4 fails with EMFILE before it looks at the
// listener, and the loop frees its reserve to try again: an error that
// lasts (ENOMEM, ENOBUFS, a security module's EPERM) met by that second
// try pauses the listener as one met by the first does. Watched, the
// listener readable, the loop would wake every turn at full CPU. Here the
// "listener" is a socket that does not listen, a datagram waiting in it
// (readable; accept4 says EINVAL once it has an fd), in a table with no
// free number once the loop holds its reserve.
TEST_F(BrokerLoopFullTableTest, AnAcceptErrorThatLastsAfterTheReserveIsFreedPausesTheListener) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  const uint8_t byte = 0;
  ASSERT_EQ(testing::RawSend(pair.second.get(), absl::MakeConstSpan(&byte, 1)), 0);
  RunLoopAtFullTable(
      pair.first.get(), wire::UnixAddress{},
      [&](int turn, FullTable& table) {
        // The first turn reported the listener with the control fd.
        if (turn < 2) return -1;
        table.filler.pop_back();  // a number for reading the fdinfo
        absl::StatusOr<bool> watched = EpollWatches(table.epoll_fd, table.listener);
        table.filler.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (!watched.ok()) return 18;
        return *watched ? 19 : 0;
      },
      "19: the listener was still watched after a lasting accept error");
}

// The connection quotas go by uid, which SO_PEERCRED tells without an fd: a
// connection over its uid's quota is refused before the broker spends fds
// verifying its peer (a pidfd, the open of its executable). With no fd to
// spare but the one the connection itself takes, the client is told its
// quota, not that the broker is out of fds.
TEST_F(BrokerLoopTest, AConnectionOverItsUidsQuotaIsRefusedBeforeItsPeerIsVerified) {
  UniqueFd listener;
  ASSERT_NO_FATAL_FAILURE(Listen(listener));
  if (!listener.valid()) GTEST_SKIP() << "this kernel cannot refuse fds on a socket";
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(dir_.Join("s")));
  ASSERT_OK_AND_ASSIGN(UniqueFd first, wire::ConnectSeqpacket(dir_.Join("s")));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // No gtest here: exit codes say what went wrong.
    Limits limits;
    limits.max_connections_per_uid = 1;
    BrokerLoop loop(handler_, audit_, stats_, limits);
    UniqueFd control(eventfd(1, EFD_CLOEXEC));  // readable every turn
    UniqueFd second(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!control.valid() || !second.valid()) _exit(10);
    // Nothing reached through `this` once the table is full (UBSan's check
    // of such a member access needs an fd of its own).
    const Stats* stats = &stats_;
    wire::ReceiveBuffer buffer;
    std::vector<UniqueFd> filler;
    filler.reserve(256);
    bool full = false;
    int turns = 0;
    int code = 13;
    absl::Status served = loop.Serve(listener.get(), control.get(), [&] {
      if (++turns > 1000) return true;  // a safety net of turns, never a wait
      if (!full) {
        if (stats->connections != 1) return false;  // `first` is not admitted yet
        // Every number but one in use (the loop's reserve fd included): the
        // second connection takes it.
        rlimit limit{128, 128};
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
          code = 12;
          return true;
        }
        for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) filler.emplace_back(fd);
        if (filler.empty()) {
          code = 12;
          return true;
        }
        filler.pop_back();
        if (connect(second.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                    address.length) != 0) {
          code = 14;
          return true;
        }
        full = true;
        return false;
      }
      pollfd answered{second.get(), POLLIN, 0};
      if (poll(&answered, 1, 0) != 1) return false;
      absl::StatusOr<std::optional<wire::Datagram>> reply =
          wire::ReceiveDatagram(second.get(), buffer);
      code = 15;
      if (reply.ok() && reply->has_value()) {
        capnp::FlatArrayMessageReader reader((*reply)->words);
        schema::Reply::Reader root = reader.getRoot<schema::Reply>();
        const char* message = root.isError() ? root.getError().getMessage().cStr() : "";
        code = absl::StrContains(message, "(--max-connections-per-uid)") ? 0 : 15;
        if (code != 0) std::fprintf(stderr, "the second client was told: %s\n", message);
      }
      return true;
    });
    _exit(served.ok() ? code : 16);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10, 12, 16: the harness; 13: the second client was never answered; 14: it could "
         "not connect; 15: not with the refusal of its quota (see the line above)";
}

// As reported: a datagram the broker cannot read (not a whole number of
// words) or whose framing is wrong was refused and never put on record.
// Each is now one denial line of kind "invalid", with the reason.
TEST_F(BrokerLoopTest, UnreadableRequestsAreOnRecordAsInvalid) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  auto [client, served] = AddUid1000(loop);
  const uint8_t odd[5] = {1, 2, 3, 4, 5};
  ASSERT_EQ(testing::RawSend(client.get(), odd), 0);
  OneTurn(loop);  // one request of a connection a turn
  const uint8_t framing[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};  // 2^32 segments
  ASSERT_EQ(testing::RawSend(client.get(), framing), 0);
  OneTurn(loop);
  std::vector<std::string> lines = absl::StrSplit(ReadAudit(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << ReadAudit();
  for (const std::string& text : lines) {
    ASSERT_OK_AND_ASSIGN(auto line, testing::FlattenJsonObject(text));
    EXPECT_EQ(line["decision"], "denied") << text;
    EXPECT_EQ(line["request.kind"], "invalid") << text;
    EXPECT_EQ(line["peer.uid"], "1000") << text;
  }
  EXPECT_THAT(lines[0], ::testing::HasSubstr("8-byte words"));
  EXPECT_EQ(stats_.denials, 2u);
}

// A receive that fails in the broker (recvmsg's ENOMEM: memory pressure
// here) is not the client's: no request is on record as invalid, and the
// connection closes as for any socket failure, rather than being answered
// as if it had sent garbage.
TEST_F(BrokerLoopTest, AReceiveFailingHereIsNoInvalidRequest) {
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  auto [client, loop_fd] = AddUid1000(loop);
  const int served = loop_fd;  // a lambda cannot capture a structured binding (C++17)
  const uint8_t odd[5] = {1, 2, 3, 4, 5};
  ASSERT_EQ(testing::RawSend(client.get(), odd), 0);
  const uint32_t connections = stats_.connections;
  EXPECT_EQ(testing::ExitCodeInChild([&] {
              const testing::SyscallFilter failing_receive(
                  SYS_recvmsg, 0, static_cast<uint32_t>(served), SECCOMP_RET_ERRNO | ENOMEM);
              if (failing_receive.Install(false) != 0) return 1;
              UniqueFd listener(eventfd(0, EFD_CLOEXEC));  // never readable
              UniqueFd control(eventfd(1, EFD_CLOEXEC));   // readable at once
              if (!loop.Serve(listener.get(), control.get(), [] { return true; }).ok()) return 2;
              if (stats_.denials != 0 || !ReadAudit().empty()) return 3;
              // Closed here (the test's process holds its own copy).
              return stats_.connections == connections - 1 ? 0 : 4;
            }),
            0);
}

// Without its reserve fd (/dev/null out of reach: systemd's
// InaccessiblePaths=/dev/null, a bare /dev), the loop's first EMFILE would
// pause its listener until a reserve it can never open is back, and no
// connection would be accepted again: it refuses to start instead, saying
// what it cannot open and why.
TEST_F(BrokerLoopTest, ALoopThatCannotOpenItsReserveFdDoesNotStart) {
  EXPECT_EQ(testing::ExitCodeInChild([&] {
              // The reserve's open (glibc's open is openat), which no
              // other open here shares: flags O_RDONLY | O_CLOEXEC.
              const testing::SyscallFilter no_reserve(SYS_openat, 2,
                                                      static_cast<uint32_t>(O_RDONLY | O_CLOEXEC),
                                                      SECCOMP_RET_ERRNO | EACCES);
              if (no_reserve.Install(false) != 0) return 1;
              BrokerLoop loop(handler_, audit_, stats_, Limits());
              const absl::Status usable = loop.Usable();
              if (usable.ok()) return 2;
              if (usable.code() != absl::StatusCode::kFailedPrecondition ||
                  !absl::StrContains(usable.message(), "open(/dev/null): Permission denied")) {
                return 3;
              }
              UniqueFd listener(eventfd(0, EFD_CLOEXEC));
              UniqueFd control(eventfd(1, EFD_CLOEXEC));
              if (loop.Serve(listener.get(), control.get(), [] { return true; }) != usable) {
                return 4;
              }
              return 0;
            }),
            0)
      << "2: the loop would start without a reserve; 3: not the error expected; 4: Serve "
         "served all the same";
  // With /dev/null there, it is usable.
  BrokerLoop loop(handler_, audit_, stats_, Limits());
  EXPECT_OK(loop.Usable());
}

}  // namespace
}  // namespace capbroker::server
