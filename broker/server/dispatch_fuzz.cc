// libFuzzer entry point for AnswerRequest: the bytes of one request
// datagram, as any local client can send them.
//
// The first input byte chooses the session state (hello done or not) and
// whether the datagram carried fds; the rest is the datagram. Beyond "does
// not crash", it checks what the loop relies on: the answer is one
// well-framed Reply whose fd list matches the fds to send,
// and the scratch segment is zeroed again (two builders once shared a dirty
// segment and crashed the broker). A broken invariant aborts.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     broker/policy/{excerpt,text_locator,schema_path,spelling,diagnostics,
//     codec_error,field_uniqueness,checks,service_validator,policy_validator,
//     policy,policy_parser}.cc broker/server/{dispatch,request_handler,
//     dispatch_fuzz}.cc broker/audit/{audit_log,json}.cc
//     broker/caps/{memory,open_path}.cc sdk/base/{kj_status,syscall,
//     unique_fd}.cc sdk/wire/{error_code,framing,names}.cc
//     bazel-bin/schemas/{broker,policy}.capnp.c++
// and run it with -max_len=70000. In `make test`, dispatch_test runs this
// function over requests written in it, each mutated a few hundred times.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "broker/audit/audit_log.h"
#include "broker/policy/policy_parser.h"
#include "broker/server/dispatch.h"
#include "broker/server/request_handler.h"
#include "capnp/serialize.h"
#include "sdk/base/kj_status.h"
#include "sdk/wire/framing.h"

namespace {

using namespace capbroker;  // NOLINT: a fuzz target's file-local helpers

constexpr char kPolicy[] = R"(
( capabilities = [
    ( name = "scratch", memory = ( size = 4096 ) ),
    ( name = "board",   memory = ( size = 4096, shared = true ) ),
    ( name = "root",    directory = ( path = "/", access = read ) ),
    ( name = "null",    file = ( path = "/dev/null", access = read ) ) ],
  principals = [
    ( name = "all", match = ( anyUser = true ),
      grants = [ "scratch", "board", "root", "null" ] ) ] )
)";

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "dispatch fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

struct World {
  World()
      : policy(std::move(ParsePolicy(kPolicy, "fuzz.capnp")).value()),
        audit(open("/dev/null", O_WRONLY | O_CLOEXEC)),
        handler(audit, stats),
        scratch(kj::heapArray<capnp::word>(1024)) {
    Check(handler.SetPolicy(policy).ok(), "set policy");
    std::memset(static_cast<void*>(scratch.begin()), 0, scratch.asBytes().size());
  }
  Policy policy;
  audit::AuditLog audit;
  server::Stats stats;
  server::RequestHandler handler;
  kj::Array<capnp::word> scratch;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // built once: the fuzzer runs millions
  if (size == 0) return 0;
  server::Session session;
  session.identity.uid = 1000;
  session.hello_done = (data[0] & 1) != 0;
  bool carried_fds = (data[0] & 2) != 0;
  ++data;
  --size;
  // The datagram, word-aligned as the receive buffer is; a partial word is
  // refused before this point, so it is cut here.
  std::vector<capnp::word> words(size / sizeof(capnp::word));
  if (!words.empty()) {  // memcpy to the null data() of an empty vector is undefined
    std::memcpy(static_cast<void*>(words.data()), data, words.size() * sizeof(capnp::word));
  }

  server::Answer answer = server::AnswerRequest(
      world->handler, session, kj::arrayPtr(words.data(), words.size()), carried_fds,
      world->scratch.asPtr());

  for (const capnp::word& w : world->scratch) {
    Check(std::memcmp(&w, "\0\0\0\0\0\0\0\0", 8) == 0, "scratch left dirty");
  }
  Check(wire::ValidateFraming(answer.words).ok(), "answer is not well framed");
  size_t fds_to_send = answer.outcome.fds.size() + (answer.outcome.shared_fd ? 1 : 0);
  absl::Status read = CatchKj("reading the answer", [&] {
    capnp::FlatArrayMessageReader reader(answer.words, wire::ReaderLimits());
    auto reply = reader.getRoot<schema::Reply>();
    Check(reply.getFds().size() == fds_to_send, "fd list does not match the fds");
    Check(fds_to_send == 0 || reply.isGranted(), "fds sent without a grant");
    Check(!reply.isError() || reply.getError().getMessage().size() > 0,
          "error without a reason");
    return absl::OkStatus();
  });
  Check(read.ok(), "answer does not read back");
  return 0;
}
