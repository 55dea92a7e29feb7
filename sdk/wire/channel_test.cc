#include "sdk/wire/channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "capnp/schema.capnp.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker::wire {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Sets `option` (SO_RCVTIMEO, SO_SNDTIMEO) of `fd` to 10 ms.
void SetTimeout(int fd, int option) {
  const timeval ten_ms{0, 10 * 1000};
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, option, &ten_ms, sizeof(ten_ms)), 0);
}

TEST(ChannelTest, RequestWithFdRoundTrips) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  Channel a(std::move(pair.first)), b(std::move(pair.second));

  capnp::MallocMessageBuilder builder;
  auto request = builder.initRoot<schema::Request>();
  request.setId(7);
  request.initAcquire().setName("motd");
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_OK(a.Send(builder, {devnull.get()}));

  ASSERT_OK_AND_ASSIGN(Incoming in, b.Receive());
  EXPECT_EQ(in.fds.size(), 1u);
  std::string name;
  uint64_t id = 0;
  ASSERT_OK(CatchKj("reading", [&] {
    auto r = in.reader->getRoot<schema::Request>();
    id = r.getId();
    name = r.getAcquire().getName().cStr();
    return absl::OkStatus();
  }));
  EXPECT_EQ(id, 7u);
  EXPECT_EQ(name, "motd");
}

TEST(ChannelTest, ForgedSegmentTableIsRejectedBeforeParsing) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  Channel b(std::move(pair.second));
  uint32_t bomb[4] = {0x7fffffff, 0xffffffff, 0, 0};
  ASSERT_EQ(write(pair.first.get(), bomb, sizeof(bomb)), 16);
  const absl::StatusOr<Incoming> received = b.Receive();
  EXPECT_THAT(received, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("segments")));
  EXPECT_TRUE(IsMalformedDatagram(received.status()));
}

TEST(ChannelTest, DeepNestingIsCaughtAsKjError) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  Channel a(std::move(pair.first)), b(std::move(pair.second));
  // schema.capnp's Type nests: a list of lists of ... deeper than the limit.
  capnp::MallocMessageBuilder builder;
  auto type = builder.initRoot<capnp::schema::Type>();
  for (int i = 0; i < kNestingLimit + 4; ++i) {
    type = type.initList().initElementType();
  }
  ASSERT_OK(a.Send(builder));
  ASSERT_OK_AND_ASSIGN(Incoming in, b.Receive());
  absl::Status status = CatchKj("reading", [&] {
    auto t = in.reader->getRoot<capnp::schema::Type>();
    while (t.isList()) t = t.getList().getElementType();
    return absl::OkStatus();
  });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr("nesting")));
}

// A channel left behind by a move has no socket and no receive buffer:
// its calls fail, they do not crash.
TEST(ChannelTest, AMovedFromChannelFailsCleanly) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  Channel a(std::move(pair.first)), peer(std::move(pair.second));
  Channel constructed(std::move(a));
  ASSERT_OK_AND_ASSIGN(auto other_pair, SeqpacketPair());
  Channel assigned(std::move(other_pair.first));
  assigned = std::move(constructed);
  for (Channel* moved_from : {&a, &constructed}) {
    EXPECT_EQ(moved_from->fd(), -1);
    auto moved = StatusIs(absl::StatusCode::kFailedPrecondition,
                          std::string("this Channel was moved from"));
    EXPECT_THAT(moved_from->Receive(), moved);
    capnp::MallocMessageBuilder builder;
    builder.initRoot<schema::Request>().setId(1);
    EXPECT_THAT(moved_from->Send(builder), moved);
  }
  // The socket went along.
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::Request>().setId(9);
  ASSERT_OK(assigned.Send(builder));
  EXPECT_OK(peer.Receive());
}

// A blocking socket whose receive timeout (SO_RCVTIMEO) passes: recvmsg
// says EAGAIN, as on an empty non-blocking socket. Nothing closed the
// connection and the socket is not non-blocking: the status says what
// happened, with a code of its own, and the channel still works.
TEST(ChannelTest, AReceiveTimeoutIsDeadlineExceeded) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  Channel a(std::move(pair.first)), b(std::move(pair.second));
  SetTimeout(b.fd(), SO_RCVTIMEO);
  EXPECT_THAT(b.Receive(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                    AllOf(HasSubstr("SO_RCVTIMEO"), Not(HasSubstr("closed")),
                                          Not(HasSubstr("non-blocking")))));
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::Request>().setId(3);
  ASSERT_OK(a.Send(builder));
  EXPECT_OK(b.Receive());
  // A non-blocking socket with nothing to read is still that.
  ASSERT_OK(SetNonBlocking(b.fd(), true));
  EXPECT_THAT(b.Receive(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("non-blocking")));
}

// The same for a send whose peer reads nothing until the send timeout
// (SO_SNDTIMEO) passes: the datagram was not sent.
TEST(ChannelTest, ASendTimeoutIsDeadlineExceeded) {
  ASSERT_OK_AND_ASSIGN(auto pair, SeqpacketPair());
  Channel a(std::move(pair.first)), b(std::move(pair.second));
  SetTimeout(a.fd(), SO_SNDTIMEO);
  capnp::MallocMessageBuilder builder;
  builder.initRoot<schema::Request>().initAcquire().setName(std::string(4096, 'a'));
  absl::Status sent;
  // The socket's send buffer (about 200 KiB) fills within a few hundred.
  for (int i = 0; i < 100000 && sent.ok(); ++i) sent = a.Send(builder);
  EXPECT_THAT(sent, StatusIs(absl::StatusCode::kDeadlineExceeded,
                             AllOf(HasSubstr("SO_SNDTIMEO"), Not(HasSubstr("non-blocking")))));
}

}  // namespace
}  // namespace capbroker::wire
