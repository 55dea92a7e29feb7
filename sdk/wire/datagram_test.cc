#include "sdk/wire/datagram.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/raw_send.h"

namespace capbroker::wire {
namespace {

using ::capbroker::testing::CountOpenFds;
using ::capbroker::testing::IsCloseOnExec;
using ::testing::HasSubstr;

class DatagramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
    a_ = std::move(pair.first);
    b_ = std::move(pair.second);
  }

  // Sends `bytes` with `fds` from a_, past the SDK's own limits.
  void RawSend(const std::vector<char>& bytes, const std::vector<int>& fds) {
    ASSERT_EQ(testing::RawSend(a_.get(),
                               absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                   bytes.size()),
                               fds),
              0);
  }

  UniqueFd a_, b_;
  ReceiveBuffer buffer_;
};

TEST_F(DatagramTest, CarriesBytesAndCloexecFds) {
  uint64_t word = 0x1122334455667788;
  iovec iov{&word, sizeof(word)};
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);  // deliberately without O_CLOEXEC
  UniqueFd r(fds[0]), w(fds[1]);
  ASSERT_OK_AND_ASSIGN(bool sent, SendDatagram(a_.get(), &iov, 1, {r.get(), w.get()}));
  EXPECT_TRUE(sent);
  ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
  ASSERT_TRUE(datagram.has_value());
  ASSERT_EQ(datagram->words.size(), 1u);
  EXPECT_EQ(std::memcmp(datagram->words.begin(), &word, 8), 0);
  ASSERT_EQ(datagram->fds.size(), 2u);
  for (const UniqueFd& fd : datagram->fds) EXPECT_TRUE(IsCloseOnExec(fd.get()));
  // The received write end reaches our read end.
  ASSERT_EQ(write(datagram->fds[1].get(), "x", 1), 1);
  char c;
  EXPECT_EQ(read(r.get(), &c, 1), 1);
}

TEST_F(DatagramTest, NonBlockingEmptySocketGivesNothing) {
  ASSERT_OK(SetNonBlocking(b_.get(), true));
  ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
  EXPECT_FALSE(datagram.has_value());
}

TEST_F(DatagramTest, PeerCloseIsUnavailable) {
  a_.reset();
  EXPECT_THAT(ReceiveDatagram(b_.get(), buffer_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("closed")));
}

// A peer that closes with datagrams of ours unread resets the connection:
// the kernel reports ECONNRESET before the datagrams the peer sent us
// first (such as the broker's reason for refusing a connection). They are
// still received, and the reset reads as the end of the stream after them.
TEST_F(DatagramTest, DatagramsSentBeforeAResetAreStillReceived) {
  uint64_t request = 1, reason = 2;
  iovec iov{&request, sizeof(request)};
  ASSERT_OK(SendDatagram(b_.get(), &iov, 1, {}).status());  // never read
  iov = {&reason, sizeof(reason)};
  ASSERT_OK(SendDatagram(a_.get(), &iov, 1, {}).status());
  a_.reset();
  ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
  ASSERT_TRUE(datagram.has_value());
  ASSERT_EQ(datagram->words.size(), 1u);
  EXPECT_EQ(std::memcmp(datagram->words.begin(), &reason, 8), 0);
  EXPECT_THAT(ReceiveDatagram(b_.get(), buffer_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("closed")));
  // With nothing sent before it, the reset is reported as one.
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  iov = {&request, sizeof(request)};
  ASSERT_OK(SendDatagram(pair.second.get(), &iov, 1, {}).status());
  pair.first.reset();
  EXPECT_THAT(ReceiveDatagram(pair.second.get(), buffer_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("reset")));
}

TEST_F(DatagramTest, EmptyDatagramIsNotEndOfStream) {
  RawSend({}, {});
  ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->words.size(), 0u);
}

TEST_F(DatagramTest, OversizedDatagramClosesItsFdsAndKeepsConnection) {
  int before = CountOpenFds();
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  RawSend(std::vector<char>(kMaxMessageBytes + 64, 'x'), {fds[0], fds[1]});
  close(fds[0]);
  close(fds[1]);
  EXPECT_THAT(ReceiveDatagram(b_.get(), buffer_),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("larger than")));
  EXPECT_EQ(CountOpenFds(), before);
  // The next datagram arrives intact.
  RawSend(std::vector<char>(16, 'y'), {});
  ASSERT_OK_AND_ASSIGN(auto next, ReceiveDatagram(b_.get(), buffer_));
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->words.size(), 2u);
}

TEST_F(DatagramTest, ExactlyMaxSizeIsAccepted) {
  RawSend(std::vector<char>(kMaxMessageBytes, 'x'), {});
  ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->words.size(), kMaxMessageBytes / 8);
}

TEST_F(DatagramTest, TooManyFdsIsDataLossAndLeaksNothing) {
  int before = CountOpenFds();
  std::vector<int> many;
  for (int i = 0; i < 200; ++i) many.push_back(a_.get());
  RawSend(std::vector<char>(8, 'x'), many);
  EXPECT_THAT(ReceiveDatagram(b_.get(), buffer_),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("closing")));
  EXPECT_EQ(CountOpenFds(), before);
}

// On a client the usual cause of MSG_CTRUNC is its own open-file limit, not
// the sender: the message must not blame the sender alone.
TEST_F(DatagramTest, FdsPastTheReceiversLimitAreDataLossNamingIt) {
  int before = CountOpenFds();
  // With the soft limit just above the lowest free fd number, the first fd
  // of the datagram fits and the next ones do not.
  ASSERT_OK_AND_ASSIGN(UniqueFd lowest,
                       TakeFd(fcntl(a_.get(), F_DUPFD_CLOEXEC, 0), "fcntl(F_DUPFD_CLOEXEC)"));
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = lowest.get() + 1;
  lowest.reset();
  RawSend(std::vector<char>(8, 'x'), {a_.get(), a_.get(), a_.get()});
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  auto received = ReceiveDatagram(b_.get(), buffer_);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_THAT(received, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("RLIMIT_NOFILE")));
  EXPECT_EQ(CountOpenFds(), before);
}

// Opted in, a datagram whose fds did not all fit arrives all the same:
// the kernel installs a datagram's fds in the order they were sent and
// stops at the first it cannot (net/core/scm.c, scm_detach_fds), so those
// that came are the first ones sent, and the message says the rest were cut.
TEST_F(DatagramTest, OptedInFdsPastTheReceiversLimitAreCutAfterThoseThatFit) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  UniqueFd memfd(memfd_create("cut", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(memfd.valid()) << std::strerror(errno);
  UniqueFd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid()) << std::strerror(errno);
  RawSend(std::vector<char>(8, 'x'), {read_end.get(), memfd.get(), null.get()});
  const int before = CountOpenFds();
  // Two of the three fds fit.
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = testing::SoftLimitLeavingRoomFor(2);
  ASSERT_NE(low.rlim_cur, 0u);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  auto received = ReceiveDatagram(b_.get(), buffer_, FdPolicy::kAcceptWhatFits);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_OK(received.status());
  ASSERT_TRUE(received->has_value());
  Datagram& datagram = **received;
  EXPECT_TRUE(datagram.fds_cut);
  EXPECT_EQ(datagram.words.size(), 1u);  // the message arrives whole
  ASSERT_EQ(datagram.fds.size(), 2u);
  // First the pipe's read end, then the memfd (the only kind with seals).
  struct stat st;
  ASSERT_EQ(fstat(datagram.fds[0].get(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(fcntl(datagram.fds[0].get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_GE(fcntl(datagram.fds[1].get(), F_GET_SEALS), 0) << std::strerror(errno);
  for (const UniqueFd& fd : datagram.fds) EXPECT_TRUE(IsCloseOnExec(fd.get()));
  EXPECT_EQ(CountOpenFds(), before + 2);
  datagram.fds.clear();
  EXPECT_EQ(CountOpenFds(), before);
  // The connection is in step: the next datagram arrives, not cut.
  RawSend(std::vector<char>(16, 'y'), {null.get()});
  ASSERT_OK_AND_ASSIGN(auto next, ReceiveDatagram(b_.get(), buffer_, FdPolicy::kAcceptWhatFits));
  ASSERT_TRUE(next.has_value());
  EXPECT_FALSE(next->fds_cut);
  EXPECT_EQ(next->words.size(), 2u);
  EXPECT_EQ(next->fds.size(), 1u);
}

// A sender past kMaxFdsPerMessage overflows the control buffer: the same
// prefix, cut short where the buffer ends.
TEST_F(DatagramTest, OptedInFdsPastTheControlBufferAreCutToItsSize) {
  const int before = CountOpenFds();
  RawSend(std::vector<char>(8, 'x'), std::vector<int>(kMaxFdsPerMessage + 1, a_.get()));
  ASSERT_OK_AND_ASSIGN(auto datagram,
                       ReceiveDatagram(b_.get(), buffer_, FdPolicy::kAcceptWhatFits));
  ASSERT_TRUE(datagram.has_value());
  EXPECT_TRUE(datagram->fds_cut);
  EXPECT_EQ(datagram->fds.size(), kMaxFdsPerMessage);
  datagram.reset();
  EXPECT_EQ(CountOpenFds(), before);
}

TEST_F(DatagramTest, RefusingFdsNeverInstallsThem) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  RawSend(std::vector<char>(8, 'x'), std::vector<int>(100, write_end.get()));
  write_end.reset();
  int before = CountOpenFds();
  ASSERT_OK_AND_ASSIGN(auto datagram,
                       ReceiveDatagram(b_.get(), buffer_, FdPolicy::kRefuse));
  ASSERT_TRUE(datagram.has_value());
  EXPECT_TRUE(datagram->fds_cut);
  EXPECT_TRUE(datagram->fds.empty());
  EXPECT_EQ(datagram->words.size(), 1u);  // the bytes arrive intact
  EXPECT_EQ(CountOpenFds(), before);
  // No copy of the write end is left anywhere.
  char c;
  EXPECT_EQ(read(read_end.get(), &c, 1), 0);
  // A datagram without fds is not flagged.
  RawSend(std::vector<char>(8, 'y'), {});
  ASSERT_OK_AND_ASSIGN(auto plain, ReceiveDatagram(b_.get(), buffer_, FdPolicy::kRefuse));
  ASSERT_TRUE(plain.has_value());
  EXPECT_FALSE(plain->fds_cut);
}

// A peek says whether the next datagram carries fds, and leaves them in it:
// the peek's own references are dropped, never the datagram's.
TEST_F(DatagramTest, PeekTellsFdsApartWithoutTakingThem) {
  ASSERT_OK_AND_ASSIGN(Waiting empty, PeekDatagram(b_.get()));
  EXPECT_EQ(empty, Waiting::kNothing);
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  RawSend(std::vector<char>(8, 'x'), {write_end.get()});
  write_end.reset();  // the datagram holds the only reference
  int before = CountOpenFds();
  ASSERT_OK_AND_ASSIGN(Waiting with_fds, PeekDatagram(b_.get()));
  EXPECT_EQ(with_fds, Waiting::kDatagramWithFds);
  EXPECT_EQ(CountOpenFds(), before);
  pollfd p{read_end.get(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the peek dropped the datagram's write end";
  ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
  ASSERT_TRUE(datagram.has_value());
  EXPECT_EQ(datagram->fds.size(), 1u);
  RawSend(std::vector<char>(8, 'y'), {});
  ASSERT_OK_AND_ASSIGN(Waiting plain, PeekDatagram(b_.get()));
  EXPECT_EQ(plain, Waiting::kDatagram);
}

// recvmsg returns 0 for an empty datagram (SOCK_SEQPACKET allows them) and
// for end of stream alike: the peek tells them apart, whether or not the
// peer has hung up, and leaves SO_PASSCRED as it found it.
TEST_F(DatagramTest, PeekTellsAnEmptyDatagramFromEndOfStream) {
  RawSend({}, {});
  ASSERT_OK_AND_ASSIGN(Waiting empty, PeekDatagram(b_.get()));
  EXPECT_EQ(empty, Waiting::kDatagram);
  a_.reset();
  ASSERT_OK_AND_ASSIGN(Waiting empty_after_hang_up, PeekDatagram(b_.get()));
  EXPECT_EQ(empty_after_hang_up, Waiting::kDatagram);
  int passcred = -1;
  socklen_t length = sizeof(passcred);
  ASSERT_EQ(getsockopt(b_.get(), SOL_SOCKET, SO_PASSCRED, &passcred, &length), 0);
  EXPECT_EQ(passcred, 0);
  char byte;
  ASSERT_EQ(recv(b_.get(), &byte, 1, MSG_DONTWAIT), 0);  // takes the empty datagram
  ASSERT_OK_AND_ASSIGN(Waiting ended, PeekDatagram(b_.get()));
  EXPECT_EQ(ended, Waiting::kEndOfStream);
}

// The peer may hang up, with datagrams of ours unread, between
// PeekDatagram's first peek (which saw its empty datagram) and the
// SO_PASSCRED one: the reset it leaves, reported once ahead of what it
// sent, must not hide the empty datagram (read as an error, the caller
// would close a connection whose later datagrams may hold fds).
TEST_F(DatagramTest, AResetDoesNotHideAnEmptyDatagramFromTheCredentialPeek) {
  uint64_t unread = 1;
  iovec iov{&unread, sizeof(unread)};
  ASSERT_OK(SendDatagram(b_.get(), &iov, 1, {}).status());  // a_ never reads it
  RawSend({}, {});
  a_.reset();  // leaves ECONNRESET on b_
  ASSERT_OK_AND_ASSIGN(bool empty_datagram, internal::EmptyDatagramWaits(b_.get()));
  EXPECT_TRUE(empty_datagram);
  char byte;
  ASSERT_EQ(recv(b_.get(), &byte, 1, MSG_DONTWAIT), 0);  // takes the empty datagram
  ASSERT_OK_AND_ASSIGN(Waiting ended, PeekDatagram(b_.get()));
  EXPECT_EQ(ended, Waiting::kEndOfStream);
}

TEST_F(DatagramTest, FdsToASocketThatRefusesThemAreAPermissionErrorSayingSo) {
  absl::Status refused = RefuseFds(b_.get());
  if (refused.code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << refused.message();
  ASSERT_OK(refused);
  uint64_t word = 0;
  iovec iov{&word, sizeof(word)};
  EXPECT_THAT(SendDatagram(a_.get(), &iov, 1, {STDIN_FILENO}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("the receiving socket refuses fds")));
  EXPECT_THAT(SendDatagram(a_.get(), &iov, 1, {}), IsOk());
}

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76  // Linux 6.5; Debian 12's headers predate it
#endif

// With SO_PASSPIDFD on the receiving socket, every datagram brings an
// SCM_PIDFD control message: a pidfd of the sender, which the kernel
// installs in the receiver. It is none of the datagram's fds: the receive
// closes it, with fds in SCM_RIGHTS or without.
TEST_F(DatagramTest, APidfdControlMessageIsClosedAndNotTakenForAnFd) {
  const int on = 1;
  if (setsockopt(b_.get(), SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on)) != 0) {
    ASSERT_EQ(errno, ENOPROTOOPT) << std::strerror(errno);
    GTEST_SKIP() << "this kernel has no SO_PASSPIDFD (Linux 6.5), so no SCM_PIDFD";
  }
  const int before = CountOpenFds();
  for (size_t count : {0, 2}) {
    SCOPED_TRACE(count);
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    UniqueFd r(fds[0]), w(fds[1]);
    const std::vector<int> sent = count == 0 ? std::vector<int>{} : std::vector<int>{r.get(), w.get()};
    RawSend(std::vector<char>(8, 'x'), sent);
    ASSERT_OK_AND_ASSIGN(auto datagram, ReceiveDatagram(b_.get(), buffer_));
    ASSERT_TRUE(datagram.has_value());
    EXPECT_EQ(datagram->fds.size(), count);
  }
  EXPECT_EQ(CountOpenFds(), before) << ::testing::PrintToString(testing::OpenFdTargets());
}

TEST_F(DatagramTest, PartialWordIsInvalid) {
  RawSend(std::vector<char>(5, 'x'), {});
  EXPECT_THAT(ReceiveDatagram(b_.get(), buffer_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("5 bytes")));
}

// What the peer sent (too large, not whole words, too many fds) is marked
// malformed; a receive that failed itself, or a hang-up, is not.
TEST_F(DatagramTest, OnlyWhatThePeerSentIsMarkedMalformed) {
  RawSend(std::vector<char>(kMaxMessageBytes + 64, 'x'), {});
  EXPECT_TRUE(IsMalformedDatagram(ReceiveDatagram(b_.get(), buffer_).status()));
  RawSend(std::vector<char>(5, 'x'), {});
  EXPECT_TRUE(IsMalformedDatagram(ReceiveDatagram(b_.get(), buffer_).status()));
  RawSend(std::vector<char>(8, 'x'), std::vector<int>(200, a_.get()));
  EXPECT_TRUE(IsMalformedDatagram(ReceiveDatagram(b_.get(), buffer_).status()));
  const absl::Status failed = ReceiveDatagram(-1, buffer_).status();
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("recvmsg")));
  EXPECT_FALSE(IsMalformedDatagram(failed));
  a_.reset();
  const absl::Status hung_up = ReceiveDatagram(b_.get(), buffer_).status();
  EXPECT_THAT(hung_up, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(IsMalformedDatagram(hung_up));
}

TEST_F(DatagramTest, SendRefusesTooManyFds) {
  uint64_t word = 0;
  iovec iov{&word, sizeof(word)};
  std::vector<int> many(kMaxFdsPerMessage + 1, a_.get());
  EXPECT_THAT(SendDatagram(a_.get(), &iov, 1, many),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at most 16")));
}

TEST_F(DatagramTest, SendToClosedPeerIsUnavailable) {
  b_.reset();
  uint64_t word = 0;
  iovec iov{&word, sizeof(word)};
  EXPECT_THAT(SendDatagram(a_.get(), &iov, 1, {}),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(DatagramTest, FullNonBlockingSocketReportsNotSent) {
  ASSERT_OK(SetNonBlocking(a_.get(), true));
  std::vector<char> bytes(4096, 'x');
  iovec iov{bytes.data(), bytes.size()};
  bool sent = true;
  for (int i = 0; i < 100000 && sent; ++i) {
    ASSERT_OK_AND_ASSIGN(sent, SendDatagram(a_.get(), &iov, 1, {}));
  }
  EXPECT_FALSE(sent);
}

}  // namespace
}  // namespace capbroker::wire
