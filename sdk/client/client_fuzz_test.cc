// Runs the client fuzz entry point (client_fuzz.cc) over broker messages
// written here, well-formed and hostile, and seeded mutations of them, so
// that it runs in `make test`. The entry point aborts on a broken
// invariant.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "capnp/message.h"
#include "gtest/gtest.h"
#include "schemas/broker.capnp.h"
#include "tests/fixtures/fuzz_datagrams.h"
#include "tests/fixtures/fuzz_corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker {
namespace {

using Fill = std::function<void(schema::Reply::Builder)>;

// The calls of client_fuzz.cc, by the byte that chooses them.
enum Call : uint8_t {
  kAcquire = 0,
  kAcquireRead = 1,
  kOpenBeneath = 2,
  kList = 3,
  kStatus = 4,
  kConnect = 5,
  kServices = 6,
  kReady = 7,
  kNextIncoming = 8,
};

struct Message {
  uint64_t id;
  Fill fill;
  size_t fds = 0;
};

// An input: how the broker ends, the calls after the hello, and the
// broker's messages, the hello reply (id 1) first.
std::vector<uint8_t> Input(bool broker_closes, std::vector<uint8_t> calls,
                           const std::vector<Message>& messages) {
  std::vector<uint8_t> input = std::move(calls);
  input.insert(input.begin(), {static_cast<uint8_t>(broker_closes),
                               static_cast<uint8_t>(input.size())});
  auto append = [&](uint64_t id, const Fill& fill, size_t fds) {
    capnp::MallocMessageBuilder message;
    auto reply = message.initRoot<schema::Reply>();
    reply.setId(id);
    fill(reply);
    testing::AppendMessage(input, message, fds);
  };
  append(1, [](schema::Reply::Builder r) {
    auto hello = r.initHello();
    hello.setVersion(schema::PROTOCOL_VERSION);
    hello.setUid(1000);
    hello.setExe("/usr/bin/true");
    hello.initPrincipals(1).set(0, "ops");
  }, 0);
  for (const Message& m : messages) append(m.id, m.fill, m.fds);
  return input;
}

// A grant of one fd described as `name` with `kind`, `access` and `path`.
Fill Grant(const char* name, schema::Kind kind, schema::Access access, const char* path = "",
           size_t entries = 1) {
  return [=](schema::Reply::Builder r) {
    r.setGranted();
    auto fds = r.initFds(entries);
    for (size_t i = 0; i < entries; ++i) {
      fds[i].setName(name);
      fds[i].setKind(kind);
      fds[i].setAccess(access);
      fds[i].setPath(path);
    }
  };
}

Fill Error(schema::ErrorCode code, const char* message) {
  return [=](schema::Reply::Builder r) {
    auto error = r.initError();
    error.setCode(code);
    error.setMessage(message);
  };
}

// `fill`, listing `entries` fds.
Fill WithFds(Fill fill, size_t entries) {
  return [=](schema::Reply::Builder r) {
    fill(r);
    r.initFds(entries);
  };
}

Fill Incoming(size_t entries = 1) {
  return [=](schema::Reply::Builder r) {
    r.initFds(entries);
    auto peer = r.initIncoming();
    peer.setPrincipal("ops");
    peer.setUid(1000);
    peer.setPid(4242);
  };
}

// A page of List with entries named `names`.
Fill Page(std::vector<const char*> names, bool more) {
  return [=](schema::Reply::Builder r) {
    auto page = r.initCapabilities();
    auto entries = page.initEntries(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      entries[i].setName(names[i]);
      entries[i].setPath("/etc/motd");
    }
    page.setMore(more);
  };
}

// A page of Services with entries named `names`; a name ending in '*' is
// an instance removed from the policy.
Fill ServicePage(std::vector<std::string> names, bool more) {
  return [=](schema::Reply::Builder r) {
    auto page = r.initServicePage();
    auto entries = page.initEntries(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      const bool removed = !names[i].empty() && names[i].back() == '*';
      entries[i].setName(removed ? names[i].substr(0, names[i].size() - 1) : names[i]);
      entries[i].setRemoved(removed);
      entries[i].setLastExit("exit status 1");
    }
    page.setMore(more);
  };
}

std::vector<std::vector<uint8_t>> Corpus() {
  using schema::Access;
  using schema::Kind;
  const Fill list = [](schema::Reply::Builder r) {
    auto list = r.initList(2);
    list[0].setName("motd");
    list[0].setPath("/etc/motd");
    list[1].setName("scratch");
    list[1].setKind(Kind::MEMORY);
    list[1].setSize(4096);
  };
  const Fill status = [](schema::Reply::Builder r) {
    auto s = r.initStatus();
    s.setVersion(1);
    s.initDenialsByReason(1)[0].setReason("permissionDenied");
    s.setLastReloadError("policy.capnp:3:4: no");
  };
  const Fill services = [](schema::Reply::Builder r) {
    auto list = r.initServices(1);
    list[0].setName("svc");
    list[0].setState(schema::ServiceState::RUNNING);
    list[0].setProtections("userns mountns");
  };
  const Fill ready = [](schema::Reply::Builder r) { r.setReady(); };
  const Fill grant_motd = Grant("motd", Kind::FILE, Access::READ);
  const std::vector<uint8_t> all = {kAcquire, kAcquireRead, kOpenBeneath, kList,
                                    kStatus,  kConnect,     kServices,    kReady};
  return {
      Input(false, {}, {}),
      // Every call answered as the broker does.
      Input(false, all,
            {{2, grant_motd, 1},
             {3, grant_motd, 1},
             {4, Grant("spool", Kind::FILE, Access::READ, "a/b"), 1},
             {5, list},
             {6, status},
             {7, Grant("svc", Kind::CONNECTION, Access::READ_WRITE), 1},
             {8, services},
             {9, ready}}),
      // Events before and between replies, then taken, by a service (one
      // that said ready); and sent to a client that is none.
      Input(false, {kReady, kAcquire, kNextIncoming, kNextIncoming, kNextIncoming},
            {{0, Incoming(), 1}, {2, ready}, {3, grant_motd, 1}, {0, Incoming(), 1}}),
      Input(false, {kAcquire, kNextIncoming}, {{0, Incoming(), 1}, {2, grant_motd, 1}}),
      // Fds on replies that carry none, and on errors.
      Input(false, {kList, kStatus}, {{2, WithFds(list, 1), 1}}),
      Input(false, {kAcquire, kList},
            {{2, WithFds(Error(schema::ErrorCode::PERMISSION_DENIED, "no rule"), 2), 2}}),
      // Errors: for the call, with id 0, and for no call.
      Input(false, {kAcquire, kList, kNextIncoming},
            {{2, Error(schema::ErrorCode::PERMISSION_DENIED, "no rule")},
             {0, Error(schema::ErrorCode::RESOURCE_EXHAUSTED, "--max-connections")},
             {0, Error(schema::ErrorCode::INTERNAL, "unasked")}}),
      // The broker hangs up with its reason waiting.
      Input(true, {kAcquire, kStatus},
            {{0, Error(schema::ErrorCode::RESOURCE_EXHAUSTED, "--max-connections")}}),
      // Grants that do not answer their request.
      Input(false, {kAcquire, kAcquire}, {{2, Grant("other", Kind::FILE, Access::READ), 1}}),
      Input(false, {kAcquireRead, kAcquire},
            {{2, Grant("motd", Kind::FILE, Access::READ_WRITE), 1}}),
      Input(false, {kConnect, kConnect}, {{2, Grant("svc", Kind::FILE, Access::READ), 1}}),
      Input(false, {kAcquire, kConnect}, {{2, Grant("motd", Kind::CONNECTION, Access::READ), 1}}),
      Input(false, {kOpenBeneath, kList},
            {{2, Grant("spool", Kind::FILE, Access::READ, "../x"), 1}}),
      Input(false, {kAcquire}, {{2, Grant("motd", Kind::FILE, Access::UNSPECIFIED), 1}}),
      // Fd lists that do not match the fds.
      Input(false, {kAcquire, kList}, {{2, grant_motd, 0}}),
      Input(false, {kAcquire, kList}, {{2, grant_motd, 2}}),
      Input(false, {kAcquire, kList}, {{2, Grant("motd", Kind::FILE, Access::READ, "", 2), 2}}),
      Input(false, {kAcquire, kList}, {{2, grant_motd, testing::kMaxFdsPerRecord}}),
      Input(false, {kReady, kNextIncoming, kNextIncoming},
            {{2, ready}, {0, Incoming(2), 2}, {0, Incoming(0), 0}}),
      // Replies to other requests, and kinds other than asked.
      Input(false, {kAcquire, kList}, {{3, grant_motd, 1}}),
      Input(false, {kList, kStatus, kServices, kReady},
            {{2, status}, {3, list}, {4, ready}, {5, services}}),
      Input(false, {kNextIncoming}, {{7, list}}),
      // List in pages, and pages that do not advance.
      Input(false, {kList, kStatus},
            {{2, Page({"a", "b"}, true)}, {3, Page({"c"}, false)}, {4, status}}),
      Input(false, {kList}, {{2, Page({"a", "b"}, true)}, {3, Page({"a", "b"}, true)}}),
      Input(false, {kList}, {{2, Page({"b", "a"}, false)}}),
      Input(false, {kList}, {{2, Page({}, true)}}),
      Input(false, {kList}, {{2, Page({"a"}, true)}, {3, list}}),
      // Services in pages, and pages that do not advance.
      Input(false, {kServices, kStatus},
            {{2, ServicePage({"a", "a*"}, true)}, {3, ServicePage({"b"}, false)}, {4, status}}),
      Input(false, {kServices},
            {{2, ServicePage({"a", "a*"}, true)}, {3, ServicePage({"a*"}, true)}}),
      Input(false, {kServices}, {{2, ServicePage({"a*", "a"}, false)}}),
      Input(false, {kServices}, {{2, ServicePage({}, true)}}),
      Input(false, {kServices}, {{2, ServicePage({"a"}, true)}, {3, services}}),
  };
}

TEST(ClientFuzzTest, WrittenInputs) {
  testing::RunWrittenCorpus(LLVMFuzzerTestOneInput, "client", Corpus());
}

TEST(ClientFuzzTest, MutatedInputs) {
  testing::RunMutatedCorpus(LLVMFuzzerTestOneInput, Corpus(), 200, 20240914);
}

}  // namespace
}  // namespace capbroker
