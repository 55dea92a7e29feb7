#include "sdk/wire/channel.h"

#include <fcntl.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "capnp/schema.capnp.h"
#include "schemas/broker.capnp.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/unix_socket.h"

namespace capbroker::wire {
namespace {

using ::testing::HasSubstr;

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
  EXPECT_THAT(b.Receive(), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("segments")));
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

}  // namespace
}  // namespace capbroker::wire
