// The kvstore's serving code in one process: KvstoreHandler on a
// ConnectionLoop over socketpairs, driven by hostile datagrams, by the
// client library and by the CLI.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/data_view.h"
#include "sdk/service/loop_harness.h"
#include "sdk/wire/unix_socket.h"
#include "services/kvstore/client.h"
#include "services/kvstore/key_name.h"
#include "services/kvstore/kvstore.capnp.h"
#include "services/kvstore/kvstore_cli.h"
#include "services/kvstore/kvstore_handler.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fd_refusal.h"
#include "tests/fixtures/gone_service.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/fixtures/undeliverable_stream.h"

namespace capbroker::kvstore {
namespace {

using ::capbroker::testing::CountOpenFds;
using ::capbroker::testing::LoopHarness;
using ::capbroker::testing::ServingThread;
using ::capbroker::testing::TempDir;
using ::testing::HasSubstr;

Store OpenStore(const TempDir& dir, Store::Options options = Store::Options()) {
  absl::StatusOr<Store> store = Store::Open(
      UniqueFd(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)), kDefaultGrant,
      options);
  EXPECT_OK(store.status());
  return std::move(store).value();
}

// The error code of a reply, or kOk for any other reply.
absl::StatusCode ReplyCode(const absl::StatusOr<wire::Incoming>& reply) {
  if (!reply.ok()) return reply.status().code();
  auto root = reply->reader->getRoot<schema::Reply>();
  return root.isError() ? static_cast<absl::StatusCode>(root.getError().getCode())
                        : absl::StatusCode::kOk;
}

class KvstoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(harness_.Start());
    ASSERT_OK_AND_ASSIGN(client_, harness_.Connect());
    baseline_ = CountOpenFds();
  }

  absl::StatusOr<wire::Incoming> Put(absl::string_view key, absl::string_view value,
                                     absl::Span<const int> fds = {}) {
    capnp::MallocMessageBuilder request;
    auto put = request.initRoot<schema::Request>().initPut();
    put.setKey(AsData(key));
    put.setValue(AsData(value));
    return harness_.Call(*client_, request, fds);
  }

  TempDir dir_;
  KvstoreHandler handler_{OpenStore(dir_)};
  LoopHarness harness_{handler_, KvstoreHandler::LoopOptions()};
  std::optional<wire::Channel> client_;
  int baseline_ = 0;
};

TEST_F(KvstoreServiceTest, BadRequestsGetErrorsAndServingGoesOn) {
  EXPECT_EQ(ReplyCode(Put("k", std::string(40000, 'v'))), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReplyCode(Put(std::string(121, 'k'), "v")), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReplyCode(Put("", "v")), absl::StatusCode::kInvalidArgument);
  {
    // Refused by the kernel: the loop makes the connection refuse fds. On a
    // kernel that cannot, refused by the loop, which never even installs
    // them (connection_loop_test proves both).
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    UniqueFd r(p[0]), w(p[1]);
    absl::StatusOr<wire::Incoming> reply = Put("k", "v", {r.get(), w.get()});
    if (testing::KernelCanRefuseFds()) {
      EXPECT_THAT(reply, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("refuses fds")));
    } else {
      EXPECT_EQ(ReplyCode(reply), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(reply->reader->getRoot<schema::Reply>().getError().getMessage()),
                  HasSubstr("carry no fds"));
    }
  }
  capnp::MallocMessageBuilder get;
  get.initRoot<schema::Request>().setGet(AsData("missing"));
  EXPECT_EQ(ReplyCode(harness_.Call(*client_, get)), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReplyCode(Put("k", "v")), absl::StatusCode::kOk);
  EXPECT_EQ(CountOpenFds(), baseline_);
}

TEST_F(KvstoreServiceTest, GarbageAndOversizedDatagramsCloseTheConnection) {
  const std::vector<uint8_t> too_big(70000, 0);
  const uint8_t junk[8] = {0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
  for (absl::Span<const uint8_t> bytes : {absl::MakeConstSpan(too_big), absl::MakeConstSpan(junk)}) {
    ASSERT_OK_AND_ASSIGN(wire::Channel bad, harness_.Connect());
    ASSERT_EQ(::capbroker::testing::RawSend(bad.fd(), bytes), 0);
    ASSERT_OK(harness_.loop().Turn(-1).status());
    EXPECT_THAT(bad.Receive(), StatusIs(absl::StatusCode::kUnavailable));
  }
  EXPECT_EQ(ReplyCode(Put("k", "v")), absl::StatusCode::kOk);
  EXPECT_EQ(CountOpenFds(), baseline_);
}

TEST_F(KvstoreServiceTest, TheClientLibraryAndTheCli) {
  std::unique_ptr<ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ServingThread::Start(handler_, KvstoreHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection));
  // Enough keys for several list replies.
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    std::string key = std::string(100, 'k') + std::to_string(1000 + i);
    ASSERT_OK(kv.Put(key, "v"));
    expected.push_back(key);
  }
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> keys, kv.List());
  EXPECT_EQ(keys, expected);
  EXPECT_THAT(kv.Delete("nothing"), StatusIs(absl::StatusCode::kNotFound));

  std::ostringstream out, err;
  auto run = [&](std::vector<std::string> args) {
    out.str("");
    err.str("");
    return RunKvstoreCli(kv, args, out, err);
  };
  EXPECT_EQ(run({"put", "greeting", "hello"}), kExitOk);
  EXPECT_EQ(run({"get", "greeting"}), kExitOk);
  EXPECT_EQ(out.str(), "hello\n");
  EXPECT_EQ(run({"delete", "greeting"}), kExitOk);
  EXPECT_EQ(run({"get", "greeting"}), kExitNotFound);
  EXPECT_THAT(err.str(), HasSubstr("no such key"));
  for (const std::string& key : expected) ASSERT_OK(kv.Delete(key));
  EXPECT_EQ(run({"put", std::string("a\nb", 3), "v"}), kExitOk);
  EXPECT_EQ(run({"list"}), kExitOk);
  EXPECT_EQ(out.str(), "a\\x0ab\n");
  EXPECT_EQ(run({"put", "k"}), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("usage"));
}

// Output that cannot be written (stdout a full disk) is a failure, not a
// silent success: `kvstore_client get k > /dev/full` exited 0.
// Keys and values are checked before anything is sent, as the store checks
// them: one too large is told the rule, not that the request does not fit
// a datagram. The service here is gone, so a request that was sent would
// fail on the connection instead.
TEST(KvstoreClientTest, ChecksKeysAndValuesBeforeSending) {
  ASSERT_OK_AND_ASSIGN(UniqueFd gone, capbroker::testing::ConnectionToAGoneService());
  KvstoreClient kv(std::move(gone));
  const std::string big(70000, 'x');
  EXPECT_THAT(kv.Put("k", big), StatusIs(absl::StatusCode::kResourceExhausted,
                                         "value of 70000 bytes; at most 32768"));
  EXPECT_THAT(kv.Put("k", std::string(40000, 'v')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "value of 40000 bytes; at most 32768"));
  const std::string long_key = "key of 70000 bytes; at most 120";
  EXPECT_THAT(kv.Put(big, "v"), StatusIs(absl::StatusCode::kResourceExhausted, long_key));
  EXPECT_THAT(kv.Get(big), StatusIs(absl::StatusCode::kResourceExhausted, long_key));
  EXPECT_THAT(kv.Delete(big), StatusIs(absl::StatusCode::kResourceExhausted, long_key));
  EXPECT_THAT(kv.Put("", "v"), StatusIs(absl::StatusCode::kInvalidArgument, "empty key"));
  EXPECT_THAT(kv.Get(""), StatusIs(absl::StatusCode::kInvalidArgument, "empty key"));
  EXPECT_THAT(kv.Delete(""), StatusIs(absl::StatusCode::kInvalidArgument, "empty key"));
  std::ostringstream out, err;
  EXPECT_EQ(RunKvstoreCli(kv, {"put", "k", big}, out, err), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("value of 70000 bytes; at most 32768"));
  // What passes the checks is sent, and finds the service gone.
  EXPECT_THAT(kv.Put("k", "v"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(KvstoreServiceTest, TheCliFailsWhenItsOutputCannotBeWritten) {
  std::unique_ptr<ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ServingThread::Start(handler_, KvstoreHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection));
  ASSERT_OK(kv.Put("k", "v"));
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"get", "k"}, {"list"}}) {
    testing::UndeliverableBuffer full;
    std::ostream out(&full);
    std::ostringstream err;
    EXPECT_EQ(RunKvstoreCli(kv, args, out, err), kExitError) << args[0];
    EXPECT_EQ(err.str(), "kvstore_client: stdout: write failed\n") << args[0];
  }
}

// A store at its limit of keys answers a put of a new one
// resourceExhausted, saying why, and serves on.
TEST(KvstoreLimitTest, APutBeyondTheLimitOfKeysIsToldWhy) {
  TempDir dir;
  Store::Options options;
  options.max_keys = 1;
  KvstoreHandler handler{OpenStore(dir, options)};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingThread> serving,
                       ServingThread::Start(handler, KvstoreHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection));
  ASSERT_OK(kv.Put("a", "1"));
  EXPECT_THAT(kv.Put("b", "2"), StatusIs(absl::StatusCode::kResourceExhausted,
                                         HasSubstr("the store is full")));
  ASSERT_OK(kv.Put("a", "changed"));
  ASSERT_OK_AND_ASSIGN(std::string a, kv.Get("a"));
  EXPECT_EQ(a, "changed");
  ASSERT_OK(kv.Delete("a"));
  ASSERT_OK(kv.Put("b", "2"));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> keys, kv.List());
  EXPECT_EQ(keys, std::vector<std::string>{"b"});
}

// A key costs a list reply far more than its length: a pointer, its bytes
// padded to whole words, and a far pointer's landing pad wherever it lands
// in another segment than the list. Counted at length + 8, 5000 two-byte
// keys made a first page of 118 KB, over the wire's limit: the loop closed
// the connection, and nobody could list the store.
// A connection refused at a limit is told why, as the reply to its first
// request, not just closed.
TEST(KvstoreRefusalTest, AConnectionBeyondTheLimitOfItsUidIsToldWhy) {
  TempDir dir;
  KvstoreHandler handler{OpenStore(dir)};
  ConnectionLoop::Options options = KvstoreHandler::LoopOptions();
  options.max_connections_per_uid = 1;
  LoopHarness harness(handler, options);
  ASSERT_OK(harness.Start());
  ASSERT_OK_AND_ASSIGN(wire::Channel served, harness.Connect());
  ASSERT_OK_AND_ASSIGN(UniqueFd refused_end, harness.broker().Connect(LoopHarness::DefaultPeer()));
  ASSERT_OK_AND_ASSIGN(bool serving, harness.loop().Turn(-1));  // takes and refuses it
  ASSERT_TRUE(serving);
  KvstoreClient refused(std::move(refused_end));
  EXPECT_THAT(refused.Get("k"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("at most 1 connections of uid 1000 at once")));
}

TEST(KvstoreListTest, EveryPageFitsTheWireWhateverTheKeys) {
  TempDir dir;
  std::set<std::string> expected;
  for (int i = 0; i < 256; ++i) expected.insert(std::string(1, static_cast<char>(i)));
  for (int i = 0; i < 5000; ++i) {
    expected.insert(std::string{static_cast<char>(i >> 8), static_cast<char>(i & 255)});
  }
  for (int i = 0; i < 300; ++i) {
    expected.insert(std::string(kMaxKeyBytes - 3, '\xfe') + std::to_string(100 + i));
  }
  // Made as files, as a store left them: 5556 puts would take 11112 fsyncs.
  for (const std::string& key : expected) dir.WriteFile(KeyFileName(key), "v");
  KvstoreHandler handler(OpenStore(dir));
  std::unique_ptr<ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ServingThread::Start(handler, KvstoreHandler::LoopOptions()));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> keys, kv.List());
  EXPECT_EQ(keys, std::vector<std::string>(expected.begin(), expected.end()));
}

// A kvstore that answers list requests with `pages`, one after the other,
// `more` on each but the last: what a compromised service could answer.
class ScriptedLister : public RequestHandler {
 public:
  explicit ScriptedLister(std::vector<std::vector<std::string>> pages)
      : pages_(std::move(pages)) {}

  absl::Status Handle(Exchange& x) override {
    auto keys = x.reply.initRoot<schema::Reply>().initKeys();
    const std::vector<std::string>& page = pages_[std::min(next_, pages_.size() - 1)];
    auto list = keys.initKeys(static_cast<unsigned>(page.size()));
    for (size_t i = 0; i < page.size(); ++i) list.set(static_cast<unsigned>(i), AsData(page[i]));
    keys.setMore(++next_ < pages_.size());
    return absl::OkStatus();
  }

 private:
  std::vector<std::vector<std::string>> pages_;
  size_t next_ = 0;
};

absl::StatusOr<std::vector<std::string>> ListFrom(std::vector<std::vector<std::string>> pages) {
  ScriptedLister lister(std::move(pages));
  CB_ASSIGN_OR_RETURN(std::unique_ptr<ServingThread> serving, ServingThread::Start(lister));
  CB_ASSIGN_OR_RETURN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection));
  return kv.List();
}

// A service that repeated a page with `more` set would keep the client
// asking forever. (Here the script ends after three pages, so that a client
// that believes it returns the repeated keys instead of hanging.)
TEST(KvstoreClientTest, RefusesPagesThatDoNotAdvance) {
  const std::vector<std::vector<std::vector<std::string>>> hostile = {
      {{"a", "b"}, {"a", "b"}, {"a", "b"}},  // the same page again
      {{"a", "b"}, {"b", "c"}},              // starts at its startAfter
      {{"a", "c"}, {"b"}},                   // goes back
      {{"b", "a"}},                          // out of order within a page
      {{"a", "a"}},                          // a key twice
      {{""}},                                // an empty key, before every key
  };
  for (const auto& pages : hostile) {
    EXPECT_THAT(ListFrom(pages),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("out of order")))
        << ::testing::PrintToString(pages);
  }
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> keys, ListFrom({{"a", "b"}, {"c"}}));
  EXPECT_THAT(keys, ::testing::ElementsAre("a", "b", "c"));
}

// A kvstore that answers pages of `page` ever-greater keys, `more` on each,
// until it has sent `total`: a client that believed all of them would hold
// whatever a compromised service chose to send.
class EndlessLister : public RequestHandler {
 public:
  explicit EndlessLister(size_t total, unsigned page = 1000) : total_(total), page_(page) {}

  absl::Status Handle(Exchange& x) override {
    auto keys = x.reply.initRoot<schema::Reply>().initKeys();
    auto list = keys.initKeys(page_);
    for (unsigned i = 0; i < page_; ++i) list.set(i, AsData(absl::StrFormat("%010d", sent_++)));
    keys.setMore(sent_ < total_);
    return absl::OkStatus();
  }

 private:
  size_t total_;
  unsigned page_;
  size_t sent_ = 0;
};

TEST(KvstoreClientTest, RefusesMoreKeysOrLongerKeysThanAStoreHolds) {
  EndlessLister lister(2 * kMaxKeys);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingThread> serving, ServingThread::Start(lister));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection));
  EXPECT_THAT(kv.List(), StatusIs(absl::StatusCode::kInternal, HasSubstr("100000 keys")));

  EXPECT_THAT(ListFrom({{"a", std::string(kMaxKeyBytes + 1, 'b')}}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("more than 120 bytes")));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> keys,
                       ListFrom({{"a", std::string(kMaxKeyBytes, 'b')}}));
  EXPECT_EQ(keys.size(), 2u);
}

// A kvstore that never answers (the other end of the connection reads
// nothing): each call gives up at the client's timeout.
TEST(KvstoreClientTest, ACallPastTheTimeoutIsDeadlineExceeded) {
  const std::vector<std::function<absl::Status(KvstoreClient&)>> calls = {
      [](KvstoreClient& kv) { return kv.Put("k", "v"); },
      [](KvstoreClient& kv) { return kv.Get("k").status(); },
      [](KvstoreClient& kv) { return kv.Delete("k"); },
      [](KvstoreClient& kv) { return kv.List().status(); },
  };
  for (size_t i = 0; i < calls.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto ends, wire::SeqpacketPair());
    KvstoreClient kv(std::move(ends.first), absl::Milliseconds(50));
    EXPECT_THAT(calls[i](kv), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                       HasSubstr("did not answer within 50ms")))
        << "call " << i;
  }
}

// A kvstore that answers one key a page, each page at once, and never says
// it is done: each page is well within the timeout, but the List as a whole
// is not (100000 round trips take far more than 10ms), so it ends at the
// timeout rather than after kMaxKeys pages.
TEST(KvstoreClientTest, TheTimeoutBoundsAWholeList) {
  EndlessLister lister(std::numeric_limits<size_t>::max(), /*page=*/1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingThread> serving, ServingThread::Start(lister));
  ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
  KvstoreClient kv(std::move(connection), absl::Milliseconds(10));
  EXPECT_THAT(kv.List(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("did not answer every page of the list within 10ms")));
}

}  // namespace
}  // namespace capbroker::kvstore
