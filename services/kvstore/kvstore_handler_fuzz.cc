// libFuzzer entry point for the kvstore's serving of requests: what any
// client the policy lets connect can send it.
//
// The input is one connection's request datagrams (HandlerFuzz,
// sdk/service/handler_fuzz.h, which checks what every service owes its
// clients). The store starts with kPresetKeys keys of every length, so
// that a list reply can fill a datagram. Beyond that, each reply must be
// one the protocol allows: list pages hold valid keys in increasing order,
// all after the page's startAfter, and a page that says "more" is not
// empty; values and error messages stay within their limits. A broken
// invariant aborts.
//
// The store lives in a fresh directory under $TEST_TMPDIR (else /tmp; a
// tmpfs such as /dev/shm keeps its fsyncs cheap) and is made afresh after
// kRenewAfter changes, so that a long run does not fill it.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     services/kvstore/{key_name,store,kvstore_handler,
//     kvstore_handler_fuzz}.cc sdk/service/{connection_loop,fake_broker,
//     handler_fuzz,loop_harness,rate_limited_log,read_file,try_accept}.cc
//     sdk/client/client.cc sdk/base/{kj_status,log_limiter,syscall,
//     unique_fd}.cc sdk/wire/{channel,datagram,error_code,framing,names,
//     socket_path,unix_socket}.cc tests/fixtures/{fd_count,fuzz_datagrams,
//     raw_send,temp_dir}.cc bazel-bin/schemas/broker.capnp.c++
//     bazel-bin/services/kvstore/kvstore.capnp.c++
// and run it with -max_len=70000 and TEST_TMPDIR=/dev/shm. In `make test`,
// kvstore_handler_fuzz_test runs this function over requests written in
// it and mutations of them.
#include <fcntl.h>

#include <cstdint>
#include <memory>
#include <string>

#include "sdk/service/data_view.h"
#include "sdk/service/handler_fuzz.h"
#include "services/kvstore/key_name.h"
#include "services/kvstore/kvstore.capnp.h"
#include "services/kvstore/kvstore_handler.h"
#include "services/kvstore/store.h"
#include "tests/fixtures/fuzz_check.h"
#include "tests/fixtures/temp_dir.h"

namespace {

using namespace capbroker;  // NOLINT: a fuzz target's file-local helpers
using capbroker::testing::FuzzCheck;

// About 80 KiB of keys in a list reply: more than one page.
constexpr size_t kPresetKeys = 1000;
constexpr int kRenewAfter = 5000;

// The preset key number `i`: every length from 1 to kMaxKeyBytes, every
// byte value.
std::string PresetKey(size_t i) {
  std::string key(1 + i % kvstore::kMaxKeyBytes, static_cast<char>(i));
  key[0] = static_cast<char>(i / 5);
  return key;
}

// What the handler reads of a request.
void ReadRequest(capnp::MessageReader& message) {
  auto request = message.getRoot<kvstore::schema::Request>();
  switch (request.which()) {
    case kvstore::schema::Request::PUT:
      request.getPut().getKey();
      request.getPut().getValue();
      return;
    case kvstore::schema::Request::GET:
      request.getGet();
      return;
    case kvstore::schema::Request::DELETE:
      request.getDelete();
      return;
    case kvstore::schema::Request::LIST:
      request.getList().getStartAfter();
      return;
  }
}

void CheckReply(int& changes, capnp::MessageReader& request_message,
                capnp::MessageReader& reply_message);

// A store in a fresh directory, its preset keys written as files before it
// opens (as a store left them), and the handler serving it.
struct World {
  World() {
    for (size_t i = 0; i < kPresetKeys; ++i) {
      dir.WriteFile(kvstore::KeyFileName(PresetKey(i)), "v", 0600);
    }
    absl::StatusOr<kvstore::Store> store = kvstore::Store::Open(
        UniqueFd(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
    FuzzCheck(store.ok(), "the store opens");
    handler = std::make_unique<kvstore::KvstoreHandler>(std::move(store).value());
    fuzz = std::make_unique<testing::HandlerFuzz>(
        *handler, kvstore::KvstoreHandler::LoopOptions(),
        testing::ProtocolChecks{ReadRequest, [this](capnp::MessageReader& request,
                                                    capnp::MessageReader& reply) {
                                  CheckReply(changes, request, reply);
                                }});
  }
  testing::TempDir dir;
  std::unique_ptr<kvstore::KvstoreHandler> handler;
  std::unique_ptr<testing::HandlerFuzz> fuzz;
  int changes = 0;
};

void CheckKeys(kvstore::schema::Request::Reader request, kvstore::schema::Keys::Reader keys) {
  FuzzCheck(request.isList(), "keys answer a list");
  absl::string_view previous = DataView(request.getList().getStartAfter());
  for (capnp::Data::Reader key : keys.getKeys()) {
    FuzzCheck(kvstore::CheckKey(DataView(key)).ok(), "a listed key is a valid key");
    FuzzCheck(DataView(key) > previous, "keys come in order, after startAfter");
    previous = DataView(key);
  }
  FuzzCheck(!keys.getMore() || keys.getKeys().size() > 0, "a page with more to come has keys");
}

void CheckReply(int& changes, capnp::MessageReader& request_message,
                capnp::MessageReader& reply_message) {
  auto reply = reply_message.getRoot<kvstore::schema::Reply>();
  if (reply.isError()) {
    // Perhaps a refusal, which answers a request nobody read: it may
    // not be readable.
    testing::CheckErrorReply(reply.getError());
    return;
  }
  auto request = request_message.getRoot<kvstore::schema::Request>();
  switch (reply.which()) {
    case kvstore::schema::Reply::DONE:
      FuzzCheck(request.isPut() || request.isDelete(), "done answers a put or a delete");
      ++changes;
      return;
    case kvstore::schema::Reply::VALUE:
      FuzzCheck(request.isGet(), "a value answers a get");
      FuzzCheck(reply.getValue().size() <= kvstore::kMaxValueBytes, "a value is within limits");
      return;
    case kvstore::schema::Reply::KEYS:
      CheckKeys(request, reply.getKeys());
      return;
    default:
      break;
  }
  FuzzCheck(false, "a reply is one the protocol has");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Destroyed at exit, so that its TempDir is removed (under Bazel in /tmp:
  // see temp_dir.cc).
  static std::unique_ptr<World> world = std::make_unique<World>();
  if (world->changes > kRenewAfter) {
    world.reset();  // the old directory goes before the new one is made
    world = std::make_unique<World>();
  }
  world->fuzz->Run(absl::MakeConstSpan(data, size));
  return 0;
}
