// libFuzzer entry point for AnswerRequest: the bytes of one request
// datagram, as any local client can send them.
//
// The first input byte chooses the session state (hello done or not) and
// whether the datagram carried fds; the rest is the datagram. Beyond "does
// not crash", it checks what the loop relies on: the answer is one
// well-framed Reply whose fd list matches the fds to send,
// and the scratch segment is zeroed again (two builders once shared a dirty
// segment and crashed the broker); and every audit line the request caused
// (written to a memfd, with a denial budget no input reaches, and a peer
// whose exe holds a newline, a quote, a byte that is not UTF-8 and U+2028)
// is exactly one JSON object (tests/fixtures/json_object.h). A broken
// invariant aborts.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     broker/policy/{excerpt,text_locator,schema_path,spelling,diagnostics,
//     codec_error,field_uniqueness,checks,service_validator,policy_validator,
//     policy,policy_parser}.cc broker/server/{dispatch,request_handler,
//     dispatch_fuzz}.cc broker/audit/{audit_log,json}.cc
//     broker/caps/{memory,open_path}.cc sdk/base/{kj_status,syscall,
//     unique_fd}.cc sdk/wire/{error_code,framing,names}.cc
//     tests/fixtures/json_object.cc bazel-bin/schemas/{broker,policy}.capnp.c++
// and run it with -max_len=70000. In `make test`, dispatch_test runs this
// function over requests written in it, each mutated a few hundred times.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "broker/audit/audit_log.h"
#include "broker/policy/policy_parser.h"
#include "broker/server/dispatch.h"
#include "broker/server/request_handler.h"
#include "capnp/serialize.h"
#include "sdk/base/kj_status.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/framing.h"
#include "tests/fixtures/json_object.h"

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

// Every denial gets its line, so that every name and path is checked.
constexpr audit::DenialBudget kNoBudget{std::numeric_limits<int>::max(), 1e9};

// The peer's executable, as hostile as a file name can be.
constexpr char kHostileExe[] = "/tmp/a\n\"}\xe9\xe2\x80\xa8";

struct World {
  World()
      : policy(std::move(ParsePolicy(kPolicy, "fuzz.capnp")).value()),
        audit_fd(memfd_create("dispatch-fuzz-audit", MFD_CLOEXEC)),
        audit(audit_fd.get(), kNoBudget),
        handler(audit, stats),
        scratch(kj::heapArray<capnp::word>(1024)) {
    Check(audit_fd.valid(), "memfd_create for the audit log");
    Check(handler.SetPolicy(policy).ok(), "set policy");
    std::memset(static_cast<void*>(scratch.begin()), 0, scratch.asBytes().size());
  }
  Policy policy;
  UniqueFd audit_fd;
  audit::AuditLog audit;
  server::Stats stats;
  server::RequestHandler handler;
  kj::Array<capnp::word> scratch;
};

// Writes the audit lines of the input and checks each is one JSON object;
// then empties the log for the next input.
void CheckAuditLines(World& world) {
  world.audit.Flush();
  struct stat st;
  Check(fstat(world.audit_fd.get(), &st) == 0, "fstat of the audit memfd");
  std::string text(static_cast<size_t>(st.st_size), '\0');
  Check(pread(world.audit_fd.get(), text.data(), text.size(), 0) == st.st_size,
        "read of the audit memfd");
  Check(text.empty() || text.back() == '\n', "the audit log ends within a line");
  for (size_t start = 0; start < text.size();) {
    const size_t end = text.find('\n', start);
    const std::string line = text.substr(start, end - start);
    absl::Status parsed = testing::ParseJsonObject(line).status();
    if (!parsed.ok()) std::fprintf(stderr, "%s\n%s\n", parsed.ToString().c_str(), line.c_str());
    Check(parsed.ok(), "an audit line is not exactly one JSON object");
    start = end + 1;
  }
  Check(ftruncate(world.audit_fd.get(), 0) == 0 && lseek(world.audit_fd.get(), 0, SEEK_SET) == 0,
        "emptying the audit memfd");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // built once: the fuzzer runs millions
  if (size == 0) return 0;
  server::Session session;
  session.identity.uid = 1000;
  session.identity.exe = kHostileExe;
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
  CheckAuditLines(*world);
  return 0;
}
