// Hostile clients against a real capbrokerd: malformed datagrams, forged
// framing, unexpected fds, protocol violations, slow and vanishing peers.
// Each test checks the reply or hang-up the bad client gets, that a good
// client still works, and that the broker's fd count returns to baseline.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capnp/schema.capnp.h"
#include "capnp/schema.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/limits.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/fuse_file.h"
#include "tests/fixtures/lingering_socket.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/hostile/hostile_fixture.h"

namespace capbroker::hostile {
namespace {

using schema::ErrorCode;

std::vector<uint8_t> Words(std::initializer_list<uint32_t> halves) {
  std::vector<uint8_t> bytes(halves.size() * sizeof(uint32_t));
  std::memcpy(bytes.data(), halves.begin(), bytes.size());
  return bytes;
}

TEST_F(HostileTest, GarbageBytes) {
  UniqueFd bad = Connect();
  std::mt19937 rng(1234);
  std::vector<uint8_t> garbage(64);
  for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng());
  // A first word whose count is small would make this a framing test; make
  // sure the table claims far more segments than allowed.
  garbage[3] = 0x7f;
  ASSERT_EQ(Send(bad.get(), garbage), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "segments");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, EmptyDatagram) {
  UniqueFd bad = Connect();
  ASSERT_EQ(Send(bad.get(), {}), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "empty message");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, OversizedDatagramKeepsConnectionUsable) {
  UniqueFd bad = Connect();
  std::vector<uint8_t> big(wire::kMaxMessageBytes + 1024, 0);
  ASSERT_EQ(Send(bad.get(), big), 0);
  ExpectError(bad.get(), 0, ErrorCode::RESOURCE_EXHAUSTED, "larger than");
  ASSERT_EQ(Send(bad.get(), HelloBytes(7, schema::PROTOCOL_VERSION)), 0);
  RawReply hello = Receive(bad.get());
  EXPECT_EQ(hello.id, 7u);
  EXPECT_EQ(hello.which, schema::Reply::HELLO) << hello.message;
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

// A well-framed message of kMaxMessageBytes + 8 bytes: one word over the
// limit, the size the receive buffer's spare word holds.
TEST_F(HostileTest, DatagramOneWordOverTheLimitIsRefused) {
  UniqueFd bad = ConnectAndHello();
  std::vector<uint8_t> bytes;
  for (size_t name = wire::kMaxMessageBytes - 200;
       name < wire::kMaxMessageBytes; ++name) {
    capnp::MallocMessageBuilder message(wire::kMaxMessageBytes / 8 + 64);
    auto request = message.initRoot<schema::Request>();
    request.setId(2);
    request.initAcquire().setName(std::string(name, 'a'));
    bytes = Encode(message);
    if (bytes.size() == wire::kMaxMessageBytes + 8) break;
  }
  ASSERT_EQ(bytes.size(), wire::kMaxMessageBytes + 8);
  ASSERT_EQ(Send(bad.get(), bytes), 0);
  ExpectError(bad.get(), 0, ErrorCode::RESOURCE_EXHAUSTED, "larger than");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, TruncatedMessages) {
  UniqueFd bad = ConnectAndHello();
  std::vector<uint8_t> whole = AcquireBytes(2, "motd");
  ASSERT_GE(whole.size(), 32u);
  std::vector<uint8_t> words_cut(whole.begin(), whole.begin() + (whole.size() / 16) * 8);
  ASSERT_EQ(Send(bad.get(), words_cut), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "segment table declares");
  std::vector<uint8_t> odd_cut(whole.begin(), whole.begin() + whole.size() / 2 + 3);
  ASSERT_EQ(Send(bad.get(), odd_cut), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "whole number of 8-byte words");
  // Still usable: a whole request works.
  ASSERT_EQ(Send(bad.get(), whole), 0);
  RawReply granted = Receive(bad.get());
  EXPECT_EQ(granted.id, 2u);
  EXPECT_EQ(granted.which, schema::Reply::GRANTED) << granted.message;
  EXPECT_EQ(granted.fds.size(), 1u);
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

// Reading a request that nests past the reader's limit throws inside the
// broker; the error reply must not reuse the reply builder's scratch segment
// (that once crashed the broker).
TEST_F(HostileTest, DeeplyNestedMessage) {
  UniqueFd bad = ConnectAndHello();
  capnp::MallocMessageBuilder message;
  auto type = message.initRoot<capnp::schema::Type>();
  for (int i = 0; i < 200; ++i) type = type.initList().initElementType();
  ASSERT_EQ(Send(bad.get(), Encode(message)), 0);
  // Read as a Request, the root's first data word is its id: in a Type,
  // that word holds the union's discriminant, LIST, and nothing else. The
  // broker reads that much and answers with it; a hang-up fails.
  ExpectError(bad.get(), static_cast<uint64_t>(capnp::schema::Type::LIST),
              ErrorCode::INVALID_REQUEST, "malformed request");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

// The smallest request that once crashed the broker (see above): a Request whose `fds`
// pointer points far outside the message.
TEST_F(HostileTest, OutOfBoundsPointerIsAnErrorNotACrash) {
  UniqueFd bad = Connect();
  const uint32_t kStatus = static_cast<uint32_t>(schema::Request::STATUS);
  std::vector<uint8_t> bytes = Words({
      0, 4,                     // one segment of 4 words
      0, 0x00010002,            // root: struct, 2 data words, 1 pointer
      7, 0,                     // id 7
      0, 0,                     // union discriminant (set below)
      (1000u << 2) | 1, 7,      // fds: a list pointer 1000 words away
  });
  uint32_t offset = capnp::Schema::from<schema::Request>()
                        .getProto().getStruct().getDiscriminantOffset();
  uint16_t which = static_cast<uint16_t>(kStatus);
  std::memcpy(bytes.data() + 16 + 2 * offset, &which, sizeof(which));
  ASSERT_EQ(Send(bad.get(), bytes), 0);
  ExpectError(bad.get(), 7, ErrorCode::INVALID_REQUEST, "malformed request");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, SegmentTableBombs) {
  UniqueFd bad = ConnectAndHello();
  // count - 1 = 0xfffffffe and 0xffffffff: billions of segments claimed.
  ASSERT_EQ(Send(bad.get(), Words({0xfffffffe, 0})), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "4294967295 segments");
  ASSERT_EQ(Send(bad.get(), Words({0xffffffff, 0})), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "4294967296 segments");
  // Eight segments whose sizes add up far beyond the datagram.
  ASSERT_EQ(Send(bad.get(), Words({7, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
                                   1000, 0, 0, 0})),
            0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "segment table declares");
  // Sizes of 0xffffffff words, which would overflow 32-bit arithmetic.
  ASSERT_EQ(Send(bad.get(), Words({0, 0xffffffff, 0, 0})), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "segment table declares");
  ASSERT_EQ(Send(bad.get(), Words({1, 0xffffffff, 2, 0, 0, 0})), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "segment table declares");
  // A table that the datagram cuts short.
  ASSERT_EQ(Send(bad.get(), Words({7, 1})), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "inside its segment table");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

// The broker takes no fds from anyone, and its socket tells the kernel so
// (SO_PASSRIGHTS off, Linux 6.16): a client's sendmsg with fds fails with
// EPERM and nothing is queued, so the broker never holds a client's file,
// not even in flight. On an older kernel it receives with no room for fds
// (wire::FdPolicy::kRefuse), so that they are discarded unopened, and
// answers that requests carry none. That drops the in-flight references
// inside the broker's recvmsg, and if one was the last, the file's release
// runs in the broker's only thread: see
// ASocketThatLingersOnCloseCannotStallTheBroker, which only 6.16 passes.
//
// Each case runs against a broker on this kernel, expecting what it does,
// and against one made to run as on a kernel without SO_PASSRIGHTS
// (BrokerOptions::without_fd_refusal), so that both paths are tested here
// whatever the kernel.
enum class FdKernel {
  kThisOne,            // as the kernel is
  kWithoutPassRights,  // as before Linux 6.16
};

class FdRefusalTest : public HostileTest, public ::testing::WithParamInterface<FdKernel> {
 protected:
  void SetUp() override {
    testing::BrokerOptions options;
    options.without_fd_refusal = GetParam() == FdKernel::kWithoutPassRights;
    options.capture_stderr = true;
    StartBroker(std::move(options));
    if (HasFatalFailure()) return;
    // The broker says at start when its sockets cannot refuse fds: proof
    // that the path taken is the one this case is about.
    EXPECT_EQ(absl::StrContains(broker_->Stderr(), "this kernel cannot refuse fds"),
              !KernelRefuses())
        << broker_->Stderr();
  }

  // Whether the broker's sockets refuse fds in this case.
  bool KernelRefuses() const {
    return GetParam() == FdKernel::kThisOne && testing::KernelCanRefuseFds();
  }

  // Sends a status request (id 5) carrying `fds` on `bad`: refused by the
  // kernel when KernelRefuses (nothing sent at all), else received without
  // them and answered with the error that says so.
  void SendStatusCarrying(int bad, const std::vector<int>& fds) {
    if (KernelRefuses()) {
      EXPECT_EQ(Send(bad, StatusBytes(5), fds), EPERM);
    } else {
      ASSERT_EQ(Send(bad, StatusBytes(5), fds), 0);
      ExpectError(bad, 5, ErrorCode::INVALID_REQUEST,
                  "requests carry no fds; this one carried some, which were discarded unopened");
    }
  }

  // Sends a status request carrying `copies` copies of a pipe's write end
  // and checks all of that.
  void ExpectFdsRefused(size_t copies);
};

void FdRefusalTest::ExpectFdsRefused(size_t copies) {
  UniqueFd bad = ConnectAndHello();
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  SendStatusCarrying(bad.get(), std::vector<int>(copies, write_end.get()));
  write_end.reset();
  // No copy of the write end is left anywhere: not queued, not in the
  // broker.
  pollfd p{read_end.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 0), 1);
  EXPECT_TRUE(p.revents & POLLHUP) << "some of the fds are still open somewhere";
  // The connection goes on with the next request.
  ASSERT_EQ(Send(bad.get(), StatusBytes(6)), 0);
  RawReply status = Receive(bad.get());
  EXPECT_EQ(status.id, 6u) << status.message;
  EXPECT_EQ(status.which, schema::Reply::STATUS) << status.message;
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_P(FdRefusalTest, AnFdSentToTheBrokerIsRefused) { ExpectFdsRefused(1); }

TEST_P(FdRefusalTest, HundredsOfFdsAreRefused) { ExpectFdsRefused(200); }

// The attack found in review: a TCP socket that lingers on close (SO_LINGER,
// data its peer never reads), wrapped in a unix socket so that the only
// reference left is the one in flight. The broker that discarded it ran its
// release in its only thread and sat in it for the whole linger, serving
// nobody (forever with a linger of 100000 s; SIGTERM waited too). Refused by
// the kernel, it never reaches the broker, and other clients are answered.
//
// The linger here outlasts the test: a broker that took the socket would
// answer nobody until the test ends (the LingeringSocket's destructor then
// resets the connection, which ends the release). So a reply to another
// client, while the attacker's socket is still lingering, is the verdict;
// the reply's safety net (ReceiveRawReply) only turns a hang into a
// failure, and no timing decides it.
TEST_P(FdRefusalTest, ASocketThatLingersOnCloseCannotStallTheBroker) {
  if (!KernelRefuses()) {
    GTEST_SKIP() << "without SO_PASSRIGHTS (Linux 6.16) the broker can be stalled so, as it "
                    "warns at start";
  }
  constexpr int kLingerSeconds = 100000;
  UniqueFd bad = ConnectAndHello();
  ASSERT_OK_AND_ASSIGN(testing::LingeringSocket lingering,
                       testing::LingeringSocket::Make(kLingerSeconds));
  int sent = Send(bad.get(), StatusBytes(5), {lingering.wrapper()});
  // Had it gone, the attacker would drop its own copy now: the broker's
  // would be the last.
  if (sent == 0) lingering.Release();
  EXPECT_EQ(sent, EPERM);
  UniqueFd other = Connect();
  ASSERT_EQ(Send(other.get(), HelloBytes(1, schema::PROTOCOL_VERSION)), 0);
  RawReply hello = Receive(other.get());
  ASSERT_FALSE(hello.timed_out) << "the broker is stuck closing a client's socket";
  EXPECT_EQ(hello.which, schema::Reply::HELLO) << hello.message;
  // The attacker's connection is served as well.
  ASSERT_EQ(Send(bad.get(), StatusBytes(6)), 0);
  EXPECT_EQ(Receive(bad.get()).id, 6u);
  other.reset();
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

// Where the kernel cannot refuse fds, the broker must leave what a client
// sends unopened (wire::FdPolicy::kRefuse): a broker that took the fds in
// and closed them would look the same to the client (the same error, the
// same hang-up of a pipe, no fd left), but its close is where the stall of
// ASocketThatLingersOnCloseCannotStallTheBroker happens. A file on a FUSE
// file system of the test's own tells them apart: close(2) of an fd of it
// asks the server to FLUSH, which the kernel's dropping of a datagram's fds
// never does, and the server counts the requests the broker's thread makes
// (the broker runs its loop in its only thread: its tid is its pid). The
// test keeps its own fd of the file to the end, so that no drop by the
// broker is the last and releases the file from the broker's thread either.
TEST_P(FdRefusalTest, AClientsFdIsNeverInstalledInTheBroker) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a FUSE file system";
  // The mount stays in this test binary's own mount namespace.
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << std::strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
      << std::strerror(errno);
  testing::TempDir dir;
  ASSERT_EQ(mkdir(dir.Join("mnt").c_str(), 0755), 0);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::FuseFile> fuse,
                       testing::FuseFile::Mount(dir.Join("mnt"), "file",
                                                dir.WriteFile("source", "contents"), false));
  UniqueFd file(open(fuse->path().c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file) << std::strerror(errno);
  UniqueFd bad = ConnectAndHello();
  fuse->RefuseThread(broker_->pid());
  SendStatusCarrying(bad.get(), std::vector<int>(3, file.get()));
  // The broker answers in order: by this reply it is done with the
  // datagram that carried the fds.
  ASSERT_EQ(Send(bad.get(), StatusBytes(6)), 0);
  EXPECT_EQ(Receive(bad.get()).id, 6u);
  fuse->RefuseThread(0);
  EXPECT_EQ(fuse->refused(), 0)
      << "the broker installed the client's fds and closed them (FLUSH)";
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

INSTANTIATE_TEST_SUITE_P(Kernels, FdRefusalTest,
                         ::testing::Values(FdKernel::kThisOne, FdKernel::kWithoutPassRights),
                         [](const ::testing::TestParamInfo<FdKernel>& kernel) {
                           return kernel.param == FdKernel::kThisOne ? "ThisKernel"
                                                                     : "WithoutSoPassrights";
                         });

TEST_F(HostileTest, UnknownRequestKind) {
  UniqueFd bad = ConnectAndHello();
  std::vector<uint8_t> bytes = StatusBytes(3);
  // One segment: the table word, then the root pointer, then the root
  // struct at the pointer's offset.
  uint64_t root;
  std::memcpy(&root, bytes.data() + 8, sizeof(root));
  ASSERT_EQ(root & 3, 0u) << "root is not a struct pointer";
  int32_t offset = static_cast<int32_t>(static_cast<uint32_t>(root)) >> 2;
  size_t data_start = 8 * (2 + offset);
  uint32_t discriminant_offset = capnp::Schema::from<schema::Request>()
                                     .getProto()
                                     .getStruct()
                                     .getDiscriminantOffset();
  size_t at = data_start + 2 * discriminant_offset;
  ASSERT_LT(at + 2, bytes.size());
  uint16_t which;
  std::memcpy(&which, bytes.data() + at, sizeof(which));
  ASSERT_EQ(which, static_cast<uint16_t>(schema::Request::STATUS));
  which = 99;
  std::memcpy(bytes.data() + at, &which, sizeof(which));
  ASSERT_EQ(Send(bad.get(), bytes), 0);
  ExpectError(bad.get(), 3, ErrorCode::INVALID_REQUEST, "unknown request kind 99");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

// The SDK refuses names and paths past the wire's limits before sending
// (sdk/wire/request_text.h); the broker checks them all the same, since any
// program can send bytes. Each is refused with its limit in the broker's
// words, the connection stays in step (the next request on it is answered),
// and nothing is kept.
TEST_F(HostileTest, OverlongOrEmptyNamesAndPathsAreRefusedByTheBroker) {
  UniqueFd bad = ConnectAndHello();
  const std::string long_name(wire::kMaxNameBytes + 1, 'n');
  const std::string long_path(wire::kMaxPathBytes + 1, 'p');
  ASSERT_EQ(Send(bad.get(), AcquireBytes(2, long_name)), 0);
  ExpectError(bad.get(), 2, ErrorCode::INVALID_REQUEST,
              absl::StrCat("capability name is ", wire::kMaxNameBytes + 1, " bytes; at most ",
                           wire::kMaxNameBytes));
  ASSERT_EQ(Send(bad.get(), OpenBeneathBytes(3, "motd", long_path)), 0);
  ExpectError(bad.get(), 3, ErrorCode::INVALID_REQUEST,
              absl::StrCat("path is ", wire::kMaxPathBytes + 1, " bytes; at most ",
                           wire::kMaxPathBytes));
  ASSERT_EQ(Send(bad.get(), OpenBeneathBytes(4, long_name, "f")), 0);
  ExpectError(bad.get(), 4, ErrorCode::INVALID_REQUEST,
              absl::StrCat("directory name is ", wire::kMaxNameBytes + 1, " bytes"));
  ASSERT_EQ(Send(bad.get(), AcquireBytes(5, "")), 0);
  ExpectError(bad.get(), 5, ErrorCode::INVALID_REQUEST, "capability name is empty");
  ASSERT_EQ(Send(bad.get(), StatusBytes(6)), 0);
  RawReply status = Receive(bad.get());
  EXPECT_EQ(status.id, 6u);
  EXPECT_EQ(status.which, schema::Reply::STATUS) << status.message;
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, WrongVersionDisconnects) {
  UniqueFd bad = Connect();
  ASSERT_EQ(Send(bad.get(), HelloBytes(1, 999)), 0);
  ExpectError(bad.get(), 1, ErrorCode::UNSUPPORTED_VERSION, "version 999");
  ExpectHangUp(bad.get());
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, RequestBeforeHelloDisconnects) {
  UniqueFd bad = Connect();
  ASSERT_EQ(Send(bad.get(), AcquireBytes(4, "motd")), 0);
  ExpectError(bad.get(), 4, ErrorCode::INVALID_REQUEST, "must be hello");
  ExpectHangUp(bad.get());
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, RequestIdZero) {
  UniqueFd bad = Connect();
  ASSERT_EQ(Send(bad.get(), HelloBytes(0, schema::PROTOCOL_VERSION)), 0);
  ExpectError(bad.get(), 0, ErrorCode::INVALID_REQUEST, "id 0 is reserved");
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, SecondHelloKeepsConnection) {
  UniqueFd bad = ConnectAndHello();
  ASSERT_EQ(Send(bad.get(), HelloBytes(2, schema::PROTOCOL_VERSION)), 0);
  ExpectError(bad.get(), 2, ErrorCode::INVALID_REQUEST, "already done");
  ASSERT_EQ(Send(bad.get(), StatusBytes(3)), 0);
  RawReply status = Receive(bad.get());
  EXPECT_EQ(status.id, 3u);
  EXPECT_EQ(status.which, schema::Reply::STATUS) << status.message;
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, ClientThatNeverReadsIsDisconnected) {
  UniqueFd bad = ConnectAndHello();
  std::vector<uint8_t> status = StatusBytes(9);
  int error = 0;
  // Bounded so that a broker that never gives up fails the test.
  for (int i = 0; i < 1000000 && error == 0; ++i) {
    error = Send(bad.get(), status, {}, MSG_DONTWAIT);
    if (error == EAGAIN || error == EWOULDBLOCK) {
      // Wait for room, or for the broker to hang up.
      pollfd p{bad.get(), POLLOUT, 0};
      ASSERT_EQ(poll(&p, 1, 20000), 1) << "the broker neither read nor hung up";
      error = 0;
    }
  }
  EXPECT_TRUE(error == EPIPE || error == ECONNRESET) << std::strerror(error);
  bad.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, DisconnectMidRequestLeaksNothing) {
  for (int i = 0; i < 20; ++i) {
    UniqueFd bad = ConnectAndHello();
    ASSERT_EQ(Send(bad.get(), AcquireBytes(2, "motd")), 0);
    bad.reset();
  }
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, PipelinedRequestsAnsweredInOrder) {
  UniqueFd conn = ConnectAndHello();
  ASSERT_EQ(Send(conn.get(), StatusBytes(10)), 0);
  ASSERT_EQ(Send(conn.get(), AcquireBytes(11, "motd")), 0);
  ASSERT_EQ(Send(conn.get(), AcquireBytes(12, "nope")), 0);
  RawReply r10 = Receive(conn.get());
  RawReply r11 = Receive(conn.get());
  RawReply r12 = Receive(conn.get());
  EXPECT_EQ(r10.id, 10u);
  EXPECT_EQ(r10.which, schema::Reply::STATUS);
  EXPECT_EQ(r11.id, 11u);
  EXPECT_EQ(r11.which, schema::Reply::GRANTED);
  EXPECT_EQ(r11.fds.size(), 1u);
  EXPECT_EQ(r12.id, 12u);
  EXPECT_EQ(r12.which, schema::Reply::ERROR);
  conn.reset();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

TEST_F(HostileTest, ManyConnectionsOpenedAndClosed) {
  std::vector<UniqueFd> connections;
  for (int i = 0; i < 200; ++i) {
    connections.push_back(i % 2 == 0 ? ConnectAndHello() : Connect());
  }
  ExpectGoodClientWorks();
  EXPECT_GT(broker_->OpenFds(), baseline_fds_);
  connections.clear();
  ExpectGoodClientWorks();
  ExpectFdsAtBaseline();
}

}  // namespace
}  // namespace capbroker::hostile
