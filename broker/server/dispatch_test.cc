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
#include "broker/server/reporting_directory.h"
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
  // Answers `message` and reads the reply as a client would: flattened
  // within the wire's limit, well framed, read with the wire's limits.
  template <typename Read>
  void AnswerOverTheWire(capnp::MallocMessageBuilder& message, Read read) {
    Answer answer = AnswerMessage(message);
    EXPECT_LE(answer.words.size() * sizeof(capnp::word), wire::kMaxMessageBytes);
    EXPECT_OK(wire::ValidateFraming(answer.words));
    capnp::FlatArrayMessageReader reader(answer.words.slice(0, answer.words.size()),
                                         wire::ReaderLimits());
    read(reader.getRoot<schema::Reply>());
  }
  // Expects `message`, of id 3, answered with an error of `code` whose
  // message has `why`.
  void ExpectError(capnp::MallocMessageBuilder& message, schema::ErrorCode code,
                   absl::string_view why) {
    uint64_t id;
    auto [got, text] = ErrorOf(AnswerMessage(message), &id);
    EXPECT_EQ(got, code);
    EXPECT_EQ(id, 3u);
    EXPECT_THAT(text, HasSubstr(why));
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
    Page page;
    AnswerOverTheWire(message, [&](schema::Reply::Reader reply) {
      EXPECT_TRUE(reply.isCapabilities())
          << (reply.isError() ? reply.getError().getMessage().cStr() : "another kind");
      if (!reply.isCapabilities()) return;
      for (auto entry : reply.getCapabilities().getEntries()) {
        page.names.push_back(entry.getName());
      }
      page.more = reply.getCapabilities().getMore();
    });
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
  // The fixture's small policy: one reply, the old `list`.
  AnswerOverTheWire(message, [](schema::Reply::Reader reply) {
    ASSERT_TRUE(reply.isList());
    ASSERT_EQ(reply.getList().size(), 1u);
    EXPECT_EQ(std::string(reply.getList()[0].getName()), "scratch");
  });
  Install(LargePolicy());
  ExpectError(message, schema::ErrorCode::RESOURCE_EXHAUSTED, "in pages");
}

// A page's startAfter is a name: a longer one is refused, for a list page
// and a services page alike.
TEST_F(DispatchTest, AStartAfterLongerThanANameIsRefused) {
  const std::string too_long(wire::kMaxNameBytes + 1, 'a');
  for (bool services : {false, true}) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    request.setId(3);
    if (services) {
      request.setServices();
      request.initServicesPage().setStartAfter(too_long);
    } else {
      request.setList();
      request.initListPage().setStartAfter(too_long);
    }
    ExpectError(message, schema::ErrorCode::INVALID_REQUEST, "startAfter");
  }
}

// 256 services (a policy's most) with names of 64 bytes (a name's most),
// reported in descending order, each with a `missing` and a `lastExit`
// longer than a reply should carry (a reason can quote a program's path),
// and two instances removed from the policy: one of a name the policy
// still has, one of a name it no longer has.
std::vector<ServiceReport> LargeReport() {
  std::vector<ServiceReport> reports;
  for (int i = 255; i >= 0; --i) {
    ServiceReport r;
    r.name = absl::StrFormat("svc%03d", i) + std::string(58, 'n');
    r.state = schema::ServiceState::FAILED;
    r.protections = "userns mountns pidns ipcns utsns netns nnp caps seccomp landlock:7";
    r.missing = "cgroup: " + std::string(5000 + i, 'm');
    r.last_exit = "could not start: /" + std::string(6000 + i, 'p') + ": No such file";
    r.activation = "atStart";
    reports.push_back(std::move(r));
  }
  ServiceReport old = reports[100];
  old.removed = true;
  old.state = schema::ServiceState::STOPPING;
  old.pid = 4242;
  reports.push_back(old);
  old.name = "gone";
  reports.insert(reports.begin(), old);
  return reports;
}

class ServicePageTest : public DispatchTest {
 protected:
  // The pages are measured with the texts whole: the broker's own uid asks,
  // which sees them (others see a placeholder, request_handler_test).
  ServicePageTest() {
    handler_.SetServiceDirectory(&directory_);
    session_.identity.uid = geteuid();
  }

  struct Entry {
    std::string name;
    bool removed = false;
    bool operator==(const Entry& o) const { return name == o.name && removed == o.removed; }
    bool operator<(const Entry& o) const {
      return name != o.name ? name < o.name : removed < o.removed;
    }
  };
  struct Page {
    std::vector<Entry> entries;
    bool more = false;
  };
  // Asks for the page after `start_after` as the broker answers it, with
  // the reply flattened for the wire, which it must fit; checks each
  // entry's texts are within the wire's bound.
  Page PageAfter(const Entry& start_after) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    request.setId(++next_id_);
    request.setServices();
    auto asked = request.initServicesPage();
    asked.setStartAfter(start_after.name);
    asked.setStartAfterRemoved(start_after.removed);
    Page page;
    AnswerOverTheWire(message, [&](schema::Reply::Reader reply) {
      EXPECT_TRUE(reply.isServicePage())
          << (reply.isError() ? reply.getError().getMessage().cStr() : "another kind");
      if (!reply.isServicePage()) return;
      for (auto entry : reply.getServicePage().getEntries()) {
        page.entries.push_back(Entry{entry.getName(), entry.getRemoved()});
        for (capnp::Text::Reader text : {entry.getProtections(), entry.getMissing(),
                                         entry.getLastExit(), entry.getActivation()}) {
          EXPECT_LE(text.size(), wire::kMaxServiceTextBytes) << entry.getName().cStr();
        }
      }
      page.more = reply.getServicePage().getMore();
    });
    return page;
  }

  ReportingDirectory directory_;
  uint64_t next_id_ = 100;
};

TEST_F(ServicePageTest, EveryPageFitsTheWireAndThePagesListEveryServiceOnceInOrder) {
  directory_.reports = LargeReport();
  std::vector<Entry> all;
  int pages = 0;
  for (Page page = PageAfter({});; page = PageAfter(all.back())) {
    ++pages;
    ASSERT_FALSE(page.entries.empty()) << "page " << pages << " is empty";
    all.insert(all.end(), page.entries.begin(), page.entries.end());
    if (!page.more) break;
    ASSERT_LT(pages, 300) << "the pages do not end";
  }
  std::vector<Entry> expected;
  for (const ServiceReport& r : directory_.reports) expected.push_back({r.name, r.removed});
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(all, expected);  // in order, each once, the removed instance after its namesake
  // Some 2.9 MB of reasons, cut to 4 KiB each: entries of about 8.3 KB,
  // 7 to a page of 62 KiB, 37 pages (each well filled).
  EXPECT_GE(pages, 33);
  EXPECT_LE(pages, 40);
}

TEST_F(ServicePageTest, ALongReasonIsCutAndSaysSo) {
  ServiceReport r;
  r.name = "svc";
  r.missing = std::string(wire::kMaxServiceTextBytes, 'm');  // fits as it is
  r.last_exit = "could not start: " + std::string(10000, 'p');
  directory_.reports = {r};
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(3);
  request.setServices();
  request.initServicesPage();
  AnswerOverTheWire(message, [&](schema::Reply::Reader reply) {
    ASSERT_TRUE(reply.isServicePage());
    auto entry = reply.getServicePage().getEntries()[0];
    EXPECT_EQ(std::string(entry.getMissing()), r.missing);
    std::string last_exit = entry.getLastExit();
    EXPECT_LE(last_exit.size(), wire::kMaxServiceTextBytes);
    EXPECT_THAT(last_exit, ::testing::StartsWith("could not start: ppp"));
    EXPECT_THAT(last_exit, ::testing::EndsWith("... (truncated; 10017 bytes)"));
  });
}

TEST_F(ServicePageTest, AServicesRequestWithoutPagesIsWholeOrRefused) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(3);
  request.setServices();
  ServiceReport small;
  small.name = "b";
  ServiceReport other;
  other.name = "a";
  directory_.reports = {small, other};
  // A small report: one reply, the old `services`, in name order.
  AnswerOverTheWire(message, [](schema::Reply::Reader reply) {
    ASSERT_TRUE(reply.isServices());
    ASSERT_EQ(reply.getServices().size(), 2u);
    EXPECT_EQ(std::string(reply.getServices()[0].getName()), "a");
  });
  directory_.reports = LargeReport();
  ExpectError(message, schema::ErrorCode::RESOURCE_EXHAUSTED, "in pages");
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
  add([](schema::Request::Builder r) {
    r.setServices();
    auto page = r.initServicesPage();
    page.setStartAfter("kvstore");
    page.setStartAfterRemoved(true);
  });
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
