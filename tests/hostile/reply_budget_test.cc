// The budgets for queued replies of all connections together, in bytes
// (--max-queued-reply-bytes) and in the fds they hold
// (--max-queued-reply-fds): clients that do not read their replies cannot
// make the broker hold more than that, and when a reply would go over it,
// the connection holding the most goes, not a client that reads.
//
// How much the broker holds for a connection is known exactly, without
// timing: after a request, two status round trips on a good client mean
// the broker has handled the request and tried to send its reply (it
// answers a connection's requests in order and sends queued replies before
// it reads again), and SIOCINQ on our end counts the bytes of every reply
// that reached our socket. The rest waits in the broker's queue.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/client/client.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_baseline.h"
#include "tests/fixtures/raw_send.h"
#include "tests/hostile/hostile_fixture.h"

namespace capbroker::hostile {
namespace {

// The smallest budget the flag takes: one reply of the largest size.
constexpr size_t kBudget = wire::kMaxMessageBytes;
constexpr size_t kFdBudget = 2;

// Six file capabilities with 4000-byte paths: a list reply of about 24 KiB,
// so that two of them fit in kBudget and three do not. And "scratch": each
// grant of it is a new memfd.
std::string BigListPolicy() {
  std::string caps;
  for (int i = 0; i < 6; ++i) {
    absl::StrAppend(&caps, i ? ", " : "", "( name = \"c", i, "\", file = ( path = \"/",
                    std::string(3990, 'a' + i), "\", access = read ) )");
  }
  absl::StrAppend(&caps, ", ( name = \"scratch\", memory = ( size = 4096 ) )");
  std::string grants = "\"scratch\"";
  for (int i = 0; i < 6; ++i) absl::StrAppend(&grants, ", \"c", i, "\"");
  return absl::StrCat("( capabilities = [ ", caps,
                      " ], principals = [ ( name = \"t\", match = ( uid = $UID ), "
                      "grants = [ ", grants, " ] ) ] )");
}

class ReplyBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        broker_, testing::BrokerProcess::Start(
                     BigListPolicy(),
                     {"--max-queued-reply-bytes", absl::StrCat(kBudget),
                      "--max-queued-reply-fds", absl::StrCat(kFdBudget)}));
    ASSERT_OK_AND_ASSIGN(good_, Client::Connect(broker_->socket_path()));
    baseline_fds_ = broker_->OpenFds();
  }

  // A raw connection past hello, its hello reply read.
  UniqueFd Connect() {
    absl::StatusOr<UniqueFd> fd = wire::ConnectSeqpacket(broker_->socket_path());
    EXPECT_OK(fd.status());
    if (!fd.ok()) return UniqueFd();
    EXPECT_EQ(testing::RawSend(fd->get(), HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
    char buf[4096];
    EXPECT_GT(recv(fd->get(), buf, sizeof(buf), 0), 0);
    return std::move(fd).value();
  }

  // Sends `request` on `fd` and waits until the broker has handled it and
  // tried to send the reply.
  void SendRequest(int fd, const std::vector<uint8_t>& request) {
    ASSERT_EQ(testing::RawSend(fd, request), 0);
    ASSERT_OK(good_->Status().status());
    ASSERT_OK(good_->Status().status());
  }
  void SendList(int fd) { SendRequest(fd, ListBytes(++next_id_)); }

  // Sends list requests on `fd`, which never reads, until exactly `queued`
  // replies wait in the broker for it; returns the size of one reply.
  size_t FillQueue(int fd, size_t queued) {
    size_t reply_bytes = FillQueueWith(fd, queued, [&] { return ListBytes(++next_id_); });
    EXPECT_GT(reply_bytes, kBudget / 3);
    EXPECT_LE(2 * reply_bytes + 1024, kBudget);  // room for a status reply too
    return reply_bytes;
  }

  // The same with the requests `request` makes, whose replies are all of
  // one size.
  size_t FillQueueWith(int fd, size_t queued,
                       const std::function<std::vector<uint8_t>()>& request) {
    SendRequest(fd, request());
    size_t reply_bytes = InQueue(fd);  // our socket had room for the first
    EXPECT_GT(reply_bytes, 0u);
    if (reply_bytes == 0) return 0;
    size_t sent = 1;
    // Bounded: the broker's socket buffer holds a few hundred KiB, and our
    // socket at most net.unix.max_dgram_qlen (512) datagrams.
    for (int i = 0; i < 2000 && sent - InQueue(fd) / reply_bytes < queued; ++i) {
      SendRequest(fd, request());
      ++sent;
      EXPECT_FALSE(HungUp(fd)) << "disconnected with " << sent - InQueue(fd) / reply_bytes
                               << " replies queued";
    }
    EXPECT_EQ(sent - InQueue(fd) / reply_bytes, queued);
    return reply_bytes;
  }

  // Stops the broker (SIGSTOP) and waits until it is stopped, so that what
  // is sent next is all there when it runs again: one loop turn. The broker
  // is this process's child (BrokerProcess forks it), so its stop is an
  // event waitid reports, however long a loaded machine takes to run it.
  void StopBroker() {
    ASSERT_EQ(kill(broker_->pid(), SIGSTOP), 0);
    siginfo_t info{};
    ASSERT_EQ(RetryEintr([&] { return waitid(P_PID, broker_->pid(), &info, WSTOPPED); }), 0)
        << std::strerror(errno);
    ASSERT_EQ(info.si_code, CLD_STOPPED) << "the broker did not stop: si_code " << info.si_code;
  }

  // Reads one reply from `fd`; returns how many fds came with it (closed
  // here), or -1 when the broker hung up instead.
  static int ReceiveFds(int fd) {
    char buf[wire::kMaxMessageBytes];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * wire::kMaxFdsPerMessage)];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) return -1;
    int count = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < fds; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        close(received);
        ++count;
      }
    }
    return count;
  }

  void ExpectFdsAtBaseline() { testing::ExpectFdsAtBaseline(*broker_, *good_, baseline_fds_); }

  std::unique_ptr<testing::BrokerProcess> broker_;
  std::optional<Client> good_;
  int baseline_fds_ = -1;
  uint64_t next_id_ = 1;
};

// Two replies of one connection wait in the broker; a reply for another
// connection would take the total over the budget: the one that does not
// read goes, and the other gets its reply.
TEST_F(ReplyBudgetTest, DisconnectsTheConnectionHoldingTheMost) {
  UniqueFd hoarder = Connect();
  FillQueue(hoarder.get(), 2);
  UniqueFd asker = Connect();
  SendList(asker.get());
  EXPECT_TRUE(HungUp(hoarder.get())) << "the budget was not enforced";
  EXPECT_FALSE(HungUp(asker.get()));
  EXPECT_GT(InQueue(asker.get()), 0u) << "the asker got no reply";
  EXPECT_OK(good_->List());
  hoarder.reset();
  asker.reset();
  ExpectFdsAtBaseline();
}

// The connection that holds the most is the one asking: it goes.
TEST_F(ReplyBudgetTest, DisconnectsTheAskerWhenItHoldsTheMost) {
  UniqueFd hoarder = Connect();
  FillQueue(hoarder.get(), 2);
  // A third queued reply is still far below the per-connection limits (32
  // replies, 256 KiB), but not within the budget for all connections.
  SendList(hoarder.get());
  EXPECT_TRUE(HungUp(hoarder.get())) << "the budget was not enforced";
  EXPECT_OK(good_->List());
  hoarder.reset();
  ExpectFdsAtBaseline();
}

// The fds those replies hold are budgeted the same way: two grants of new
// memfds wait for a connection that does not read; a grant for another
// connection would take the total over --max-queued-reply-fds, so the one
// that does not read goes, and the asker gets its fd.
TEST_F(ReplyBudgetTest, FdsHeldByQueuedRepliesAreBudgetedToo) {
  UniqueFd hoarder = Connect();
  FillQueueWith(hoarder.get(), kFdBudget, [&] { return AcquireBytes(++next_id_, "scratch"); });
  UniqueFd asker = Connect();
  SendRequest(asker.get(), AcquireBytes(++next_id_, "scratch"));
  EXPECT_TRUE(HungUp(hoarder.get())) << "the fd budget was not enforced";
  EXPECT_FALSE(HungUp(asker.get()));
  EXPECT_GT(InQueue(asker.get()), 0u) << "the asker got no reply";
  EXPECT_OK(good_->Acquire("scratch").status());
  hoarder.reset();
  asker.reset();
  ExpectFdsAtBaseline();
}

// A client that reads its replies is never the one to go. Its grant waits
// in its queue until the end of the loop turn, like every reply, but that
// is not holding anything: here the victim's grant and the trigger's come
// in one turn (the broker is stopped while both are sent), with a hoarder
// holding one fd of the budget of two. The grant queued first takes the
// total to the budget; the other would go over it. Both clients read, and
// both must get their grants: the first grant can go out at once, which
// leaves room.
TEST_F(ReplyBudgetTest, RepliesNotYetSentThisTurnAreNotHeldAgainstAClientThatReads) {
  // Both before the hoarder, with lower fds in the broker: whichever of
  // them the loop reads first is the victim.
  UniqueFd victim = Connect();
  UniqueFd trigger = Connect();
  UniqueFd hoarder = Connect();
  FillQueueWith(hoarder.get(), 1, [&] { return AcquireBytes(++next_id_, "scratch"); });
  StopBroker();
  ASSERT_EQ(testing::RawSend(victim.get(), AcquireBytes(++next_id_, "scratch")), 0);
  ASSERT_EQ(testing::RawSend(trigger.get(), AcquireBytes(++next_id_, "scratch")), 0);
  ASSERT_EQ(kill(broker_->pid(), SIGCONT), 0);
  EXPECT_EQ(ReceiveFds(victim.get()), 1) << "the victim, which reads, got no grant";
  EXPECT_EQ(ReceiveFds(trigger.get()), 1) << "the trigger got no grant";
  ASSERT_OK(good_->Status().status());
  EXPECT_FALSE(HungUp(victim.get())) << "the client that reads was disconnected";
  EXPECT_OK(good_->Acquire("scratch").status());
  victim.reset();
  hoarder.reset();
  trigger.reset();
  ExpectFdsAtBaseline();
}

}  // namespace
}  // namespace capbroker::hostile
