// dispatch_bench: the broker's own work per request, in one process and
// without sockets: parse an acquire, decide, audit, build the reply, and
// write the audit line (to /dev/null). What capbrokerd adds to a round
// trip beyond its system calls.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "benchmark/benchmark.h"
#include "broker/audit/audit_log.h"
#include "broker/policy/policy_parser.h"
#include "broker/server/dispatch.h"
#include "broker/server/request_handler.h"
#include "capnp/message.h"
#include "capnp/serialize.h"

namespace capbroker::server {
namespace {

constexpr char kPolicy[] = R"(
( capabilities = [ ( name = "board", memory = ( size = 4096, shared = true ) ) ],
  principals = [ ( name = "bench", match = ( uid = 1000 ), grants = [ "board" ] ) ] ))";

void BM_AnswerAcquire(benchmark::State& state) {
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  audit::AuditLog audit(devnull);
  Stats stats;
  RequestHandler handler(audit, stats);
  if (!handler.SetPolicy(std::move(ParsePolicy(kPolicy, "bench.capnp")).value()).ok()) {
    state.SkipWithError("policy");
    return;
  }
  Session session;
  session.identity.uid = 1000;
  session.identity.gid = 1000;
  session.identity.pid = 4242;
  session.identity.exe = "/usr/local/bin/some-client";
  session.hello_done = true;
  kj::Array<capnp::word> scratch = kj::heapArray<capnp::word>(1024);
  std::memset(static_cast<void*>(scratch.begin()), 0, scratch.asBytes().size());
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<schema::Request>();
  request.setId(7);
  request.initAcquire().setName("board");
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  for (auto _ : state) {
    Answer answer = AnswerRequest(handler, session, flat, false, scratch.asPtr());
    benchmark::DoNotOptimize(answer.words.begin());
    audit.Flush();
  }
  close(devnull);
}
BENCHMARK(BM_AnswerAcquire);

}  // namespace
}  // namespace capbroker::server

BENCHMARK_MAIN();
