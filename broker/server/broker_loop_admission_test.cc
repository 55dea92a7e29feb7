// BrokerLoop's admission of connections from several uids: the quotas are
// per kernel uid, and a few uids (one user's subordinate uid range is
// 65536 of them) can hold every connection the broker serves; root must
// still get in. Connections are made as other uids by switching this
// process's euid around connect(2) (SO_PEERCRED records the euid at
// connect), so it needs root outside a user namespace that maps only root:
// the target runs outside Bazel's sandbox.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "broker/audit/audit_log.h"
#include "broker/server/broker_loop.h"
#include "broker/server/request_handler.h"
#include "broker/server/stats.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/request_bytes.h"

namespace capbroker::server {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Ordinary uids, no user's: the kernel needs no account for them.
constexpr uid_t kAlice = 61001;
constexpr uid_t kBob = 61002;
constexpr uid_t kCarol = 61003;
constexpr uid_t kDave = 61004;

class BrokerLoopAdmissionTest : public ::testing::Test {
 protected:
  BrokerLoopAdmissionTest()
      : audit_fd_(open("/dev/null", O_WRONLY | O_CLOEXEC)),
        audit_(audit_fd_.get()),
        handler_(audit_, stats_) {}

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as other uids";
    // An abstract address: no directory on the way for the other uids to
    // be kept out of.
    listener_ = UniqueFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ASSERT_TRUE(listener_.valid()) << std::strerror(errno);
    std::string name =
        absl::StrCat("capbroker-admission-test-", getpid(), "-",
                     ::testing::UnitTest::GetInstance()->random_seed(), "-", ++listeners_made_);
    address_.sun_family = AF_UNIX;
    ASSERT_LT(name.size() + 1, sizeof(address_.sun_path));
    std::memcpy(address_.sun_path + 1, name.data(), name.size());
    address_length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&address_), address_length_), 0)
        << std::strerror(errno);
    // Room for every connection a test makes before the loop takes any.
    ASSERT_EQ(listen(listener_.get(), 64), 0) << std::strerror(errno);
    absl::Status refused = wire::RefuseFds(listener_.get());
    if (refused.code() != absl::StatusCode::kUnimplemented) {
      ASSERT_OK(refused);
    }
  }

  // A connection (non-blocking) to the listener whose peer, as SO_PEERCRED has it, is
  // `uid` (this process with that euid while it connects).
  UniqueFd ConnectAs(uid_t uid) {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    EXPECT_TRUE(fd.valid()) << std::strerror(errno);
    if (!fd.valid()) return fd;
    if (setresuid(-1, uid, -1) != 0) {
      ADD_FAILURE() << "setresuid(-1, " << uid << ", -1): " << std::strerror(errno);
      return UniqueFd();
    }
    int connected = connect(fd.get(), reinterpret_cast<sockaddr*>(&address_), address_length_);
    int connect_errno = errno;
    if (setresuid(-1, 0, -1) != 0) {
      // Nothing else in this process can be trusted to work as another uid.
      std::perror("setresuid(-1, 0, -1)");
      std::abort();
    }
    EXPECT_EQ(connected, 0) << "connect as uid " << uid << ": " << std::strerror(connect_errno);
    if (connected != 0) return UniqueFd();
    return fd;
  }

  // Runs the loop until `done` says so after a turn (the control fd is
  // readable every turn); fails after 1000 turns, a safety net of turns,
  // never a wait. Once per loop: Serve takes the listener for good.
  void RunUntil(BrokerLoop& loop, const std::function<bool()>& done) {
    UniqueFd control(eventfd(1, EFD_CLOEXEC));
    ASSERT_TRUE(control.valid());
    int turns = 0;
    ASSERT_OK(loop.Serve(listener_.get(), control.get(), [&] { return done() || ++turns > 1000; }));
    EXPECT_LE(turns, 1000) << "the loop never got there";
  }

  static bool Readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }

  // The message of the error reply waiting in `fd` (with id `id`), or what
  // came instead.
  static std::string ErrorMessage(int fd, uint64_t id = 0) {
    wire::ReceiveBuffer buffer;
    absl::StatusOr<std::optional<wire::Datagram>> reply = wire::ReceiveDatagram(fd, buffer);
    if (!reply.ok()) return absl::StrCat("(no reply: ", reply.status().ToString(), ")");
    if (!reply->has_value()) return "(nothing to read)";
    capnp::FlatArrayMessageReader reader((*reply)->words);
    schema::Reply::Reader root = reader.getRoot<schema::Reply>();
    if (root.getId() != id) return absl::StrCat("(a reply with id ", root.getId(), ")");
    if (!root.isError()) return "(not an error)";
    return root.getError().getMessage().cStr();
  }

  // A refusal sent to a client names no holder: neither how many uids
  // hold connections nor any uid and its count (Holders, for stderr).
  static void ExpectNoHolders(const std::string& refused) {
    EXPECT_THAT(refused, Not(HasSubstr("hold them"))) << refused;
    EXPECT_THAT(refused, Not(HasSubstr("the most ("))) << refused;
    for (uid_t uid : {uid_t{0}, kAlice, kBob, kCarol, kDave}) {
      EXPECT_THAT(refused, Not(HasSubstr(absl::StrCat("uid ", uid)))) << refused;
    }
  }

  // Whether `fd` has a hello reply with id 1 waiting.
  static bool HelloAnswered(int fd) {
    wire::ReceiveBuffer buffer;
    absl::StatusOr<std::optional<wire::Datagram>> reply = wire::ReceiveDatagram(fd, buffer);
    if (!reply.ok() || !reply->has_value()) return false;
    capnp::FlatArrayMessageReader reader((*reply)->words);
    schema::Reply::Reader root = reader.getRoot<schema::Reply>();
    return root.getId() == 1 && root.isHello();
  }

  static int listeners_made_;
  UniqueFd audit_fd_;
  audit::AuditLog audit_;
  Stats stats_;
  RequestHandler handler_;
  UniqueFd listener_;
  sockaddr_un address_{};
  socklen_t address_length_ = 0;
};

int BrokerLoopAdmissionTest::listeners_made_ = 0;

// Two uids hold every connection --max-connections allows, one each (their
// --max-connections-per-uid). A third uid is refused and told the broker
// is full, but not who fills it (the stderr line says how many uids hold
// them and who holds the most); root still gets in, and is served.
TEST_F(BrokerLoopAdmissionTest, RootIsAdmittedWhenOtherUidsHoldEveryConnection) {
  Limits limits;
  limits.max_connections = 2;
  limits.max_connections_per_uid = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  // The loop takes them in this order (the listener's queue is first in,
  // first out).
  UniqueFd alice = ConnectAs(kAlice);
  UniqueFd bob = ConnectAs(kBob);
  UniqueFd carol = ConnectAs(kCarol);
  UniqueFd root = ConnectAs(0);
  ASSERT_TRUE(alice.valid() && bob.valid() && carol.valid() && root.valid());
  ASSERT_EQ(testing::RawSend(root.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  ::testing::internal::CaptureStderr();
  RunUntil(loop, [&] { return Readable(carol.get()) && Readable(root.get()); });
  const std::string err = ::testing::internal::GetCapturedStderr();

  std::string refused = ErrorMessage(carol.get());
  EXPECT_THAT(refused,
              AllOf(HasSubstr("the broker refused the connection"),
                    HasSubstr("(--max-connections)"), HasSubstr("try again later")));
  ExpectNoHolders(refused);
  EXPECT_THAT(err, AllOf(HasSubstr(absl::StrCat("refusing uid ", kCarol)),
                         HasSubstr("clients of 2 uids hold them"),
                         HasSubstr(absl::StrCat("uid ", kAlice, " the most (1)"))));
  EXPECT_TRUE(HelloAnswered(root.get())) << "root was not served: " << ErrorMessage(root.get());
  EXPECT_EQ(stats_.connections, 3u);
}

// A uid refused by its own quota holds no connection, and is not counted
// among the uids that hold them. Root, past --max-connections (0) within
// its reserve, is refused by --max-connections-per-uid (0); alice is then
// refused by --max-connections, and the broker's line says that no uid
// holds a connection.
TEST_F(BrokerLoopAdmissionTest, AUidRefusedByItsQuotaIsNotCountedAmongTheHolders) {
  Limits limits;
  limits.max_connections = 0;
  limits.max_connections_per_uid = 0;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd root = ConnectAs(0);
  UniqueFd alice = ConnectAs(kAlice);
  ASSERT_TRUE(root.valid() && alice.valid());
  ::testing::internal::CaptureStderr();
  RunUntil(loop, [&] { return Readable(root.get()) && Readable(alice.get()); });
  const std::string err = ::testing::internal::GetCapturedStderr();

  EXPECT_THAT(ErrorMessage(root.get()), HasSubstr("(--max-connections-per-uid)"));
  const std::string refused = ErrorMessage(alice.get());
  EXPECT_THAT(refused, HasSubstr("(--max-connections)"));
  ExpectNoHolders(refused);
  EXPECT_THAT(err, AllOf(HasSubstr(absl::StrCat("refusing uid ", kAlice)),
                         HasSubstr("clients of 0 uids hold them")));
  EXPECT_EQ(stats_.connections, 0u);
}

// The reserve is bounded: root, within its own --max-connections-per-uid,
// gets kAdministratorReserve connections beyond --max-connections, and the
// next one is refused too.
TEST_F(BrokerLoopAdmissionTest, RootsReserveIsBounded) {
  Limits limits;
  limits.max_connections = 2;
  limits.max_connections_per_uid = 100;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd alice = ConnectAs(kAlice);
  UniqueFd bob = ConnectAs(kBob);
  ASSERT_TRUE(alice.valid() && bob.valid());
  std::vector<UniqueFd> roots;
  for (size_t i = 0; i <= kAdministratorReserve; ++i) roots.push_back(ConnectAs(0));
  for (const UniqueFd& root : roots) ASSERT_TRUE(root.valid());
  const UniqueFd& last = roots.back();
  ::testing::internal::CaptureStderr();
  RunUntil(loop, [&] { return Readable(last.get()); });
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(stats_.connections, 2 + kAdministratorReserve);
  std::string refused = ErrorMessage(last.get());
  EXPECT_THAT(refused,
              AllOf(HasSubstr("the broker refused the connection"),
                    HasSubstr("(--max-connections)"), HasSubstr(absl::StrCat(kAdministratorReserve, " more for the administrator"))));
  ExpectNoHolders(refused);
  EXPECT_THAT(err, AllOf(HasSubstr("clients of 3 uids hold them"),
                         HasSubstr(absl::StrCat("uid 0 the most (", kAdministratorReserve, ")"))));
  for (size_t i = 0; i + 1 < roots.size(); ++i) {
    EXPECT_FALSE(Readable(roots[i].get()))
        << "root's connection " << i << " was refused: " << ErrorMessage(roots[i].get());
  }
}

// Root's connections count against its own --max-connections-per-uid like
// anyone's: the reserve lets it past the total only.
TEST_F(BrokerLoopAdmissionTest, RootsReserveIsWithinItsPerUidQuota) {
  Limits limits;
  limits.max_connections = 2;
  limits.max_connections_per_uid = 1;
  BrokerLoop loop(handler_, audit_, stats_, limits);
  UniqueFd alice = ConnectAs(kAlice);
  UniqueFd bob = ConnectAs(kBob);
  UniqueFd root = ConnectAs(0);
  UniqueFd second_root = ConnectAs(0);
  ASSERT_TRUE(alice.valid() && bob.valid() && root.valid() && second_root.valid());
  RunUntil(loop, [&] { return Readable(second_root.get()); });
  EXPECT_THAT(ErrorMessage(second_root.get()),
              AllOf(HasSubstr("uid 0 has 1 connections open"),
                    HasSubstr("(--max-connections-per-uid)"), Not(HasSubstr("hold them"))));
  EXPECT_FALSE(Readable(root.get()));
  EXPECT_EQ(stats_.connections, 3u);
}

// A broker run by a user (not root): its own uid shares root's reserve,
// so that user can still reach the broker it runs.
TEST_F(BrokerLoopAdmissionTest, TheBrokersOwnUidIsAdmittedLikeRoot) {
  UniqueFd alice = ConnectAs(kAlice);
  UniqueFd carol = ConnectAs(kCarol);
  UniqueFd bob = ConnectAs(kBob);  // the broker's uid
  UniqueFd dave = ConnectAs(kDave);
  ASSERT_TRUE(alice.valid() && carol.valid() && bob.valid() && dave.valid());
  ASSERT_EQ(testing::RawSend(bob.get(), testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  ::testing::internal::CaptureStderr();  // the child's stderr too
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // No gtest here: exit codes say what went wrong.
    if (setresgid(kBob, kBob, kBob) != 0 || setresuid(kBob, kBob, kBob) != 0) _exit(10);
    Limits limits;
    limits.max_connections = 2;
    limits.max_connections_per_uid = 1;
    BrokerLoop loop(handler_, audit_, stats_, limits);
    UniqueFd control(eventfd(1, EFD_CLOEXEC));
    if (!control.valid()) _exit(11);
    int turns = 0;
    absl::Status served = loop.Serve(listener_.get(), control.get(), [&] {
      return (Readable(bob.get()) && Readable(dave.get())) || ++turns > 1000;
    });
    if (!served.ok()) _exit(12);
    if (turns > 1000) _exit(13);
    _exit(stats_.connections == 3 ? 0 : 14);
  }
  int status = 0;
  const pid_t waited = waitpid(pid, &status, 0);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(waited, pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: setresuid failed; 11, 12: the harness; 13: bob or dave never answered; 14: not "
         "3 connections admitted";
  EXPECT_TRUE(HelloAnswered(bob.get())) << "bob was not served: " << ErrorMessage(bob.get());
  const std::string refused = ErrorMessage(dave.get());
  EXPECT_THAT(refused, HasSubstr("(--max-connections)"));
  ExpectNoHolders(refused);
  EXPECT_THAT(err, HasSubstr("clients of 3 uids hold them"));
}

// A broker in a user namespace that does not map every uid sees each user
// it leaves out as the overflow uid (65534). Such a peer is refused,
// saying why, before it counts against that uid's quota: another one, who
// would share it, still gets in (its connection limit of 1 untouched).
// Where every uid is mapped, 65534 is a uid like any other.
TEST_F(BrokerLoopAdmissionTest, AnUnmappedOverflowUidIsRefusedAndAMappedOneServed) {
  constexpr uid_t kOverflow = 65534;
  Limits limits;
  limits.max_connections_per_uid = 1;
  for (bool mapped : {false, true}) {
    SCOPED_TRACE(mapped ? "mapped" : "not mapped");
    peer::UnmappedIds unmapped;
    if (!mapped) unmapped.uid = kOverflow;
    BrokerLoop loop(handler_, audit_, stats_, limits, unmapped);
    const uint32_t before = stats_.connections;  // the first loop's stay open
    UniqueFd unknown = ConnectAs(kOverflow);
    UniqueFd alice = ConnectAs(kAlice);
    ASSERT_TRUE(unknown.valid() && alice.valid());
    for (int fd : {unknown.get(), alice.get()}) {
      ASSERT_EQ(testing::RawSend(fd, testing::HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
    }
    RunUntil(loop, [&] { return Readable(unknown.get()) && Readable(alice.get()); });
    if (mapped) {
      EXPECT_TRUE(HelloAnswered(unknown.get())) << ErrorMessage(unknown.get());
    } else {
      EXPECT_THAT(ErrorMessage(unknown.get()),
                  AllOf(HasSubstr("the broker refused the connection: its uid 65534 cannot "
                                  "be told apart from users the broker's user namespace does "
                                  "not map"),
                        HasSubstr("run the broker in the initial user namespace or in one that "
                                  "maps every uid")));
    }
    EXPECT_TRUE(HelloAnswered(alice.get())) << ErrorMessage(alice.get());
    EXPECT_EQ(stats_.connections - before, mapped ? 2u : 1u);
  }
}

}  // namespace
}  // namespace capbroker::server
