#include "broker/server/dispatch.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include "broker/policy/policy_parser.h"
#include "capnp/schema.capnp.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/framing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker::server {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "scratch", memory = ( size = 4096 ) ) ],
  principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "scratch" ] ) ] ))";

class DispatchTest : public ::testing::Test {
 protected:
  DispatchTest()
      : policy_(std::move(ParsePolicy(kPolicy, "t.capnp")).value()),
        audit_(devnull_),
        handler_(audit_, stats_),
        scratch_(kj::heapArray<capnp::word>(1024)) {
    EXPECT_OK(handler_.SetPolicy(policy_));
    std::memset(static_cast<void*>(scratch_.begin()), 0, scratch_.asBytes().size());
    session_.identity.uid = 1000;
    session_.hello_done = true;
  }
  ~DispatchTest() override { close(devnull_); }

  Answer AnswerBytes(kj::ArrayPtr<const capnp::word> words, bool carried_fds = false) {
    return AnswerRequest(handler_, session_, words, carried_fds, scratch_.asPtr());
  }
  Answer AnswerMessage(capnp::MallocMessageBuilder& message, bool carried_fds = false) {
    kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
    return AnswerBytes(flat, carried_fds);
  }
  // The reply's error code and message; "" and UNKNOWN for a non-error.
  std::pair<schema::ErrorCode, std::string> ErrorOf(const Answer& answer, uint64_t* id) {
    capnp::FlatArrayMessageReader reader(answer.words);
    auto reply = reader.getRoot<schema::Reply>();
    *id = reply.getId();
    if (!reply.isError()) return {schema::ErrorCode::UNKNOWN, ""};
    return {reply.getError().getCode(), reply.getError().getMessage().cStr()};
  }
  bool ScratchIsZero() const {
    for (const capnp::word& w : scratch_) {
      if (std::memcmp(&w, "\0\0\0\0\0\0\0\0", 8) != 0) return false;
    }
    return true;
  }

  int devnull_ = open("/dev/null", O_WRONLY | O_CLOEXEC);
  Policy policy_;
  audit::AuditLog audit_;
  Stats stats_;
  RequestHandler handler_;
  Session session_;
  kj::Array<capnp::word> scratch_;
};

TEST_F(DispatchTest, GrantsAndLeavesScratchZeroed) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(9);
  request.initAcquire().setName("scratch");
  Answer answer = AnswerMessage(message);
  uint64_t id;
  EXPECT_EQ(ErrorOf(answer, &id).first, schema::ErrorCode::UNKNOWN);
  EXPECT_EQ(id, 9u);
  EXPECT_EQ(answer.outcome.fds.size(), 1u);
  EXPECT_TRUE(ScratchIsZero());
}

TEST_F(DispatchTest, GarbageIsAnErrorWithIdZero) {
  std::vector<capnp::word> words(4);
  std::memset(static_cast<void*>(words.data()), 0xab, 32);
  Answer answer = AnswerBytes(kj::arrayPtr(words.data(), words.size()));
  uint64_t id;
  auto [code, message] = ErrorOf(answer, &id);
  EXPECT_EQ(code, schema::ErrorCode::INVALID_REQUEST);
  EXPECT_EQ(id, 0u);
  EXPECT_THAT(message, HasSubstr("segments"));
}

TEST_F(DispatchTest, RequestThatCarriedFdsIsRefusedWithItsId) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(4);
  request.initAcquire().setName("scratch");
  Answer answer = AnswerMessage(message, true);
  uint64_t id;
  auto [code, text] = ErrorOf(answer, &id);
  EXPECT_EQ(code, schema::ErrorCode::INVALID_REQUEST);
  EXPECT_EQ(id, 4u);
  EXPECT_THAT(text, HasSubstr("discarded unopened"));
  EXPECT_TRUE(answer.outcome.fds.empty());
}

TEST_F(DispatchTest, ThrowingDecodeIsAnErrorAndScratchStaysClean) {
  // A chain of lists nested far past the reader's limit, read as a Request.
  capnp::MallocMessageBuilder message;
  auto type = message.initRoot<capnp::schema::Type>();
  for (int i = 0; i < 100; ++i) type = type.initList().initElementType();
  Answer answer = AnswerMessage(message);
  uint64_t id;
  auto [code, text] = ErrorOf(answer, &id);
  EXPECT_EQ(code, schema::ErrorCode::INVALID_REQUEST);
  EXPECT_THAT(text, HasSubstr("malformed request"));
  EXPECT_TRUE(ScratchIsZero());
  // And the next request is served normally from the same scratch.
  capnp::MallocMessageBuilder good;
  auto request = good.initRoot<schema::Request>();
  request.setId(5);
  request.initAcquire().setName("scratch");
  EXPECT_EQ(AnswerMessage(good).outcome.fds.size(), 1u);
}

TEST_F(DispatchTest, CountsRefusals) {
  std::vector<capnp::word> words(1);
  AnswerBytes(kj::arrayPtr(words.data(), 0));
  EXPECT_EQ(stats_.denials, 1u);
  EXPECT_EQ(stats_.denials_by_reason["invalidRequest"], 1u);
}

// Runs the fuzz entry point over valid requests of every kind and seeded
// mutations of them (bit flips, word overwrites, truncations).
TEST(DispatchFuzzTest, SurvivesMutations) {
  std::vector<std::vector<uint8_t>> seeds;
  auto add = [&](auto fill) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    request.setId(1);
    fill(request);
    kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
    auto bytes = flat.asBytes();
    for (uint8_t state = 0; state < 8; ++state) {
      std::vector<uint8_t> input = {state};
      input.insert(input.end(), bytes.begin(), bytes.end());
      seeds.push_back(input);
    }
  };
  add([](schema::Request::Builder r) { r.initHello().setVersion(1); });
  add([](schema::Request::Builder r) { r.initAcquire().setName("scratch"); });
  add([](schema::Request::Builder r) { r.initAcquire().setName("board"); });
  add([](schema::Request::Builder r) {
    auto a = r.initAcquire();
    a.setName("board");
    a.setAccess(schema::Access::READ);
  });
  add([](schema::Request::Builder r) {
    auto o = r.initOpenBeneath();
    o.setDirectory("root");
    o.setPath("etc/hostname");
  });
  add([](schema::Request::Builder r) { r.setList(); });
  add([](schema::Request::Builder r) { r.setStatus(); });
  std::mt19937 rng(20261121);
  int runs = 0;
  for (const auto& seed : seeds) {
    ASSERT_EQ(LLVMFuzzerTestOneInput(seed.data(), seed.size()), 0);
    for (int m = 0; m < 300; ++m) {
      std::vector<uint8_t> input = seed;
      switch (rng() % 3) {
        case 0:
          for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
            size_t at = 1 + rng() % (input.size() - 1);
            input[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          }
          break;
        case 1: {
          size_t at = 1 + (rng() % ((input.size() - 1) / 4)) * 4;
          uint32_t value = rng();
          std::memcpy(&input[at], &value, std::min<size_t>(4, input.size() - at));
          break;
        }
        default:
          input.resize(1 + rng() % (input.size() - 1));
      }
      ASSERT_EQ(LLVMFuzzerTestOneInput(input.data(), input.size()), 0);
      ++runs;
    }
  }
  EXPECT_EQ(runs, 300 * static_cast<int>(seeds.size()));
}

}  // namespace
}  // namespace capbroker::server
