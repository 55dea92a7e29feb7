#include "sdk/wire/framing.h"

#include <cstring>
#include <vector>

#include "capnp/schema.capnp.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker::wire {
namespace {

using ::testing::HasSubstr;

// Words of a hand-written message: a segment table then `body` words.
std::vector<capnp::word> Frame(std::vector<uint32_t> table, size_t body) {
  size_t table_words = (table.size() + 1) / 2;
  std::vector<capnp::word> words(table_words + body);
  std::memcpy(static_cast<void*>(words.data()), table.data(), table.size() * sizeof(uint32_t));
  return words;
}

TEST(ValidateFramingTest, AcceptsARealMessage) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<capnp::schema::Type>().initList();
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
  EXPECT_OK(ValidateFraming(flat));
}

TEST(ValidateFramingTest, RejectsEmpty) {
  EXPECT_THAT(ValidateFraming({}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(ValidateFramingTest, RejectsSegmentCountBomb) {
  auto words = Frame({0xfffffffe, 1}, 1);
  EXPECT_THAT(ValidateFraming(kj::arrayPtr(words.data(), words.size())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("4294967295 segments")));
}

TEST(ValidateFramingTest, RejectsCountWrapAround) {
  // count - 1 = 0xffffffff: count overflows 32 bits.
  auto words = Frame({0xffffffff, 0}, 0);
  EXPECT_THAT(ValidateFraming(kj::arrayPtr(words.data(), words.size())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("segments")));
}

TEST(ValidateFramingTest, RejectsTableLongerThanMessage) {
  // Claims 8 segments (table of 5 words) in a 1-word message.
  auto words = Frame({7}, 0);
  EXPECT_THAT(ValidateFraming(kj::arrayPtr(words.data(), 1)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("inside its segment table")));
}

TEST(ValidateFramingTest, RejectsSizeLargerThanMessage) {
  auto words = Frame({0, 1000}, 4);
  EXPECT_THAT(ValidateFraming(kj::arrayPtr(words.data(), words.size())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("declares 1000 words but the message has 4")));
}

TEST(ValidateFramingTest, RejectsTrailingBytes) {
  auto words = Frame({0, 2}, 4);
  EXPECT_THAT(ValidateFraming(kj::arrayPtr(words.data(), words.size())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("declares 2 words")));
}

TEST(ValidateFramingTest, RejectsSizeSumOverflowingThirtyTwoBits) {
  auto words = Frame({1, 0xffffffff, 2}, 1);
  EXPECT_THAT(ValidateFraming(kj::arrayPtr(words.data(), words.size())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("declares 4294967297 words")));
}

TEST(OutgoingFrameTest, MatchesCapnpFlatArray) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<capnp::schema::Type>().initList();
  kj::Array<capnp::word> expected = capnp::messageToFlatArray(builder);
  ASSERT_OK_AND_ASSIGN(kj::Array<capnp::word> flat, Flatten(builder));
  ASSERT_EQ(flat.size(), expected.size());
  EXPECT_EQ(std::memcmp(flat.begin(), expected.begin(), flat.asBytes().size()), 0);
  ASSERT_OK_AND_ASSIGN(OutgoingFrame frame, OutgoingFrame::Of(builder));
  EXPECT_EQ(frame.bytes(), expected.asBytes().size());
  // Moving keeps the table iovec pointing at the moved table.
  OutgoingFrame moved(std::move(frame));
  EXPECT_EQ(std::memcmp(moved.iov()[0].iov_base, expected.begin(),
                        moved.iov()[0].iov_len), 0);
}

TEST(OutgoingFrameTest, RefusesOversizedMessage) {
  capnp::MallocMessageBuilder builder;
  builder.getRoot<capnp::AnyPointer>().initAs<capnp::Data>(kMaxMessageBytes);
  EXPECT_THAT(OutgoingFrame::Of(builder),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("fit in one datagram")));
}

TEST(OutgoingFrameTest, RefusesTooManySegments) {
  // A tiny first segment forces one segment per allocation.
  capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
  auto list = builder.getRoot<capnp::AnyPointer>().initAs<
      capnp::List<capnp::Data>>(kMaxSegments + 1);
  for (size_t i = 0; i < list.size(); ++i) list.init(i, 64);
  EXPECT_THAT(OutgoingFrame::Of(builder),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("segments")));
}

}  // namespace
}  // namespace capbroker::wire
