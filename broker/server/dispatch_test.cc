#include "broker/server/dispatch.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#include "broker/policy/policy_parser.h"
#include "capnp/schema.capnp.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/framing.h"
#include "sdk/wire/limits.h"

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

// A policy of 1000 file capabilities named cap0000 to cap0999, written in
// descending order (so that name order is not policy order), and 20 of the
// longest entries a policy can hold: names of 64 bytes and paths of 4095.
// Two principals match uid 1000 and grant overlapping halves of them.
std::string LargePolicy() {
  std::vector<std::string> caps, first, second;
  for (int i = 999; i >= 0; --i) {
    std::string name = absl::StrFormat("cap%04d", i);
    caps.push_back(absl::StrCat("( name = \"", name,
                                "\", file = ( path = \"/tmp/x/motd.txt\", access = read ) )"));
    (i < 600 ? first : second).push_back(absl::StrCat("\"", name, "\""));
    if (i >= 400 && i < 600) second.push_back(absl::StrCat("\"", name, "\""));
  }
  for (int i = 0; i < 20; ++i) {
    std::string name = absl::StrFormat("long%02d", i) + std::string(58, 'n');
    std::string path = "/" + std::string(4094, static_cast<char>('a' + i));
    caps.push_back(absl::StrCat("( name = \"", name, "\", file = ( path = \"", path,
                                "\", access = read ) )"));
    second.push_back(absl::StrCat("\"", name, "\""));
  }
  return absl::StrCat("( capabilities = [ ", absl::StrJoin(caps, ", "),
                      " ], principals = [ ( name = \"a\", match = ( uid = 1000 ), grants = [ ",
                      absl::StrJoin(first, ", "),
                      " ] ), ( name = \"b\", match = ( anyUser = true ), grants = [ ",
                      absl::StrJoin(second, ", "), " ] ) ] )");
}

class ListPageTest : public DispatchTest {
 protected:
  void Install(const std::string& text) {
    ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(text, "t.capnp"));
    ASSERT_OK(handler_.SetPolicy(std::move(policy)));
  }

  struct Page {
    std::vector<std::string> names;
    bool more = false;
  };
  // Asks for the page after `start_after` as the broker answers it, with
  // the reply flattened for the wire, which it must fit.
  Page PageAfter(const std::string& start_after) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    request.setId(++next_id_);
    request.setList();
    request.initListPage().setStartAfter(start_after);
    Answer answer = AnswerMessage(message);
    Page page;
    EXPECT_LE(answer.words.size() * sizeof(capnp::word), wire::kMaxMessageBytes);
    EXPECT_OK(wire::ValidateFraming(answer.words));
    capnp::FlatArrayMessageReader reader(answer.words.slice(0, answer.words.size()),
                                         wire::ReaderLimits());
    auto reply = reader.getRoot<schema::Reply>();
    EXPECT_TRUE(reply.isCapabilities())
        << (reply.isError() ? reply.getError().getMessage().cStr() : "another kind");
    if (!reply.isCapabilities()) return page;
    for (auto entry : reply.getCapabilities().getEntries()) {
      page.names.push_back(entry.getName());
    }
    page.more = reply.getCapabilities().getMore();
    return page;
  }

  uint64_t next_id_ = 100;
};

TEST_F(ListPageTest, EveryPageFitsTheWireAndThePagesListEverythingOnceInOrder) {
  Install(LargePolicy());
  std::vector<std::string> all;
  int pages = 0;
  for (Page page = PageAfter("");; page = PageAfter(all.back())) {
    ++pages;
    ASSERT_FALSE(page.names.empty()) << "page " << pages << " is empty";
    all.insert(all.end(), page.names.begin(), page.names.end());
    if (!page.more) break;
    ASSERT_LT(pages, 1100) << "the pages do not end";
  }
  std::vector<std::string> expected;
  for (const CapabilitySpec& spec : handler_.policy().capabilities()) {
    expected.push_back(spec.name);
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(all, expected);  // in order, each once
  // 96 KiB of paths and some 60 KiB of short entries: a few pages, each
  // well filled.
  EXPECT_GE(pages, 3);
  EXPECT_LE(pages, 6);
}

TEST_F(ListPageTest, APageFollowsThePolicyInForceWhenItIsAskedFor) {
  Install(LargePolicy());
  Page first = PageAfter("");
  ASSERT_TRUE(first.more);
  // A reload between pages: the next page lists the new policy's
  // capabilities after the last name seen.
  Install(R"(( capabilities = [ ( name = "aaa", memory = ( size = 4096 ) ),
                                ( name = "zzz", memory = ( size = 4096 ) ) ],
               principals = [ ( name = "p", match = ( uid = 1000 ), grants = [ "aaa", "zzz" ] ) ] ))");
  Page next = PageAfter(first.names.back());
  EXPECT_EQ(next.names, std::vector<std::string>{"zzz"});
  EXPECT_FALSE(next.more);
}

TEST_F(ListPageTest, AListWithoutPagesIsWholeOrRefused) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(3);
  request.setList();
  {
    // The fixture's small policy: one reply, the old `list`.
    Answer answer = AnswerMessage(message);
    capnp::FlatArrayMessageReader reader(answer.words.slice(0, answer.words.size()));
    auto reply = reader.getRoot<schema::Reply>();
    ASSERT_TRUE(reply.isList());
    ASSERT_EQ(reply.getList().size(), 1u);
    EXPECT_EQ(std::string(reply.getList()[0].getName()), "scratch");
  }
  Install(LargePolicy());
  uint64_t id;
  auto [code, text] = ErrorOf(AnswerMessage(message), &id);
  EXPECT_EQ(code, schema::ErrorCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(id, 3u);
  EXPECT_THAT(text, HasSubstr("in pages"));
}

TEST_F(ListPageTest, AStartAfterLongerThanANameIsRefused) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(3);
  request.setList();
  request.initListPage().setStartAfter(std::string(wire::kMaxNameBytes + 1, 'a'));
  uint64_t id;
  auto [code, text] = ErrorOf(AnswerMessage(message), &id);
  EXPECT_EQ(code, schema::ErrorCode::INVALID_REQUEST);
  EXPECT_THAT(text, HasSubstr("startAfter"));
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
  add([](schema::Request::Builder r) {
    r.setList();
    r.initListPage().setStartAfter("board");
  });
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
