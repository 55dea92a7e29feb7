// libFuzzer entry point for the scanner's reading of requests and its
// refusal of fds: what any client the policy lets connect can send it, fds
// included (a scan takes one; the loop lets one through, and HandlerFuzz
// sends 0 to 17).
//
// The input is one connection's request datagrams (HandlerFuzz,
// sdk/service/handler_fuzz.h, which checks what every service owes its
// clients: one reply a request, every fd closed). Beyond that, each reply
// must be one the protocol allows: info answers info and describes this
// scanner; an error or info scanned nothing. A broken invariant aborts.
//
// The fds HandlerFuzz attaches are socket ends (tests/fixtures/
// fuzz_datagrams.h), which a scan refuses ("a socket, not a regular
// file"): no scan reaches the matcher, so a verdict is itself a broken
// invariant. What is fuzzed is request parsing, the fd counts and the
// refusals; matcher_fuzz.cc fuzzes the matcher.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     services/scanner/{eicar,matcher,scanner,scanner_handler,
//     scanner_handler_fuzz,signature_db}.cc sdk/service/{connection_loop,
//     fake_broker,handler_fuzz,loop_harness,rate_limited_log,read_file,
//     try_accept}.cc sdk/client/client.cc sdk/base/{kj_status,log_limiter,
//     syscall,unique_fd}.cc sdk/wire/{channel,datagram,error_code,framing,
//     names,socket_path,unix_socket}.cc tests/fixtures/{fd_count,
//     fuzz_datagrams,raw_send}.cc bazel-bin/schemas/broker.capnp.c++
//     bazel-bin/services/scanner/scanner.capnp.c++
// and run it with -max_len=70000. In `make test`, scanner_handler_fuzz_test
// runs this function over requests written in it and mutations of them.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdk/service/handler_fuzz.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "services/scanner/scanner.h"
#include "services/scanner/scanner_handler.h"
#include "services/scanner/signature_db.h"
#include "tests/fixtures/fuzz_check.h"

namespace {

using namespace capbroker;  // NOLINT: a fuzz target's file-local helpers
using capbroker::testing::FuzzCheck;

// Small, so that each input is cheap: one 4 KiB read buffer.
constexpr scanner::Scanner::Options kOptions{.max_file_bytes = 1 << 20, .chunk_bytes = 4096};

std::vector<scanner::Signature> Database() {
  return {{"Eicar-Test-Signature", scanner::testing::Eicar()}, {"Other", "\x01\x02\x03\x04"}};
}

// What the handler reads of a request: which member it is, no more.
void ReadRequest(capnp::MessageReader& message) {
  message.getRoot<scanner::schema::Request>().which();
}

void CheckReply(capnp::MessageReader& request_message, capnp::MessageReader& reply_message) {
  auto reply = reply_message.getRoot<scanner::schema::Reply>();
  if (reply.isError()) {
    // Perhaps a refusal, which answers a request nobody read.
    testing::CheckErrorReply(reply.getError());
    FuzzCheck(reply.getBytesScanned() == 0, "an error scanned nothing");
    return;
  }
  auto request = request_message.getRoot<scanner::schema::Request>();
  switch (reply.which()) {
    case scanner::schema::Reply::CLEAN:
    case scanner::schema::Reply::INFECTED:
      FuzzCheck(false, "a verdict on a socket: a scan takes only a regular file");
      return;
    case scanner::schema::Reply::INFO:
      FuzzCheck(request.isInfo(), "info answers info");
      FuzzCheck(reply.getInfo().getSignatures() == Database().size(), "info counts the signatures");
      FuzzCheck(reply.getInfo().getMaxFileBytes() == kOptions.max_file_bytes,
                "info gives the limit");
      FuzzCheck(reply.getBytesScanned() == 0, "info scanned nothing");
      return;
    default:
      break;
  }
  FuzzCheck(false, "a reply is one the protocol has");
}

// The handler, with its database, and the driver serving it.
struct World {
  World()
      : handler(scanner::Scanner(Database(), kOptions)),
        fuzz(handler, scanner::ScannerHandler::LoopOptions(),
             testing::ProtocolChecks{ReadRequest, CheckReply}) {}
  scanner::ScannerHandler handler;
  testing::HandlerFuzz fuzz;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // never destroyed: it holds no files
  world->fuzz.Run(absl::MakeConstSpan(data, size));
  return 0;
}
