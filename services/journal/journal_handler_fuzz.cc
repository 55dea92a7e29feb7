// libFuzzer entry point for the journal's serving of requests: what any
// client the policy lets connect can send it, most of all the text of a
// record, which goes into a log that other programs parse.
//
// The input is one connection's request datagrams (HandlerFuzz,
// sdk/service/handler_fuzz.h, which checks what every service owes its
// clients). Beyond that, each reply must be one the protocol allows, with
// sequence numbers that count up by one, and each record acknowledged must
// be one JSON line in the log, with no control character (C0 or C1) and no
// U+2028 or U+2029 unescaped, whose "text" decodes to exactly the text the
// client sent. A broken invariant aborts.
//
// The log lives in a fresh directory under $TEST_TMPDIR (else /tmp) and is
// emptied after every input; the journal does not fdatasync (sync = false),
// which is not what is fuzzed here.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     services/journal/{journal,journal_handler,journal_handler_fuzz,
//     record}.cc sdk/service/{connection_loop,fake_broker,handler_fuzz,
//     loop_harness,rate_limited_log,read_file,try_accept}.cc
//     sdk/client/client.cc sdk/base/{kj_status,log_limiter,syscall,
//     unique_fd}.cc sdk/wire/{channel,datagram,error_code,framing,names,
//     socket_path,unix_socket}.cc tests/fixtures/{fd_count,fuzz_datagrams,
//     json_object,raw_send,temp_dir}.cc bazel-bin/schemas/broker.capnp.c++
//     bazel-bin/services/journal/journal.capnp.c++
// and run it with -max_len=70000. In `make test`, journal_handler_fuzz_test
// runs this function over requests written in it and mutations of them.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "sdk/service/handler_fuzz.h"
#include "services/journal/journal.capnp.h"
#include "services/journal/journal.h"
#include "services/journal/journal_handler.h"
#include "tests/fixtures/fuzz_check.h"
#include "tests/fixtures/json_object.h"
#include "tests/fixtures/temp_dir.h"

namespace {

using namespace capbroker;  // NOLINT: a fuzz target's file-local helpers
using capbroker::testing::FuzzCheck;

// What the handler reads of a request.
void ReadRequest(capnp::MessageReader& message) {
  auto request = message.getRoot<journal::schema::Request>();
  if (request.isAppend()) request.getAppend();
}

struct World;
void CheckReply(World& world, capnp::MessageReader& request_message,
                capnp::MessageReader& reply_message);

// A journal logging to a file in a fresh directory, and the handler
// serving it; `reader` reads (and empties) the log.
struct World {
  World() {
    const std::string path = dir.WriteFile("log", "", 0600);
    reader = UniqueFd(open(path.c_str(), O_RDWR | O_CLOEXEC));
    journal::Journal::Options options;
    options.sync = false;
    absl::StatusOr<journal::Journal> opened = journal::Journal::Open(
        UniqueFd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC)), journal::kDefaultGrant,
        options);
    FuzzCheck(reader.valid() && opened.ok(), "the journal opens");
    run = opened->run();
    handler = std::make_unique<journal::JournalHandler>(std::move(opened).value());
    fuzz = std::make_unique<testing::HandlerFuzz>(
        *handler, journal::JournalHandler::LoopOptions(),
        testing::ProtocolChecks{ReadRequest, [this](capnp::MessageReader& request,
                                                    capnp::MessageReader& reply) {
                                  CheckReply(*this, request, reply);
                                }});
  }

  // The log's bytes since the last call.
  std::string NewLines() {
    std::string bytes(1 << 16, '\0');
    ssize_t n = pread(reader.get(), bytes.data(), bytes.size(), static_cast<off_t>(read));
    FuzzCheck(n >= 0, "the log reads");
    bytes.resize(static_cast<size_t>(n));
    read += static_cast<size_t>(n);
    return bytes;
  }

  testing::TempDir dir;
  UniqueFd reader;
  uint64_t run = 0;
  std::unique_ptr<journal::JournalHandler> handler;
  std::unique_ptr<testing::HandlerFuzz> fuzz;
  uint64_t seq = 0;  // of the last record appended
  size_t read = 0;   // log bytes read so far
};

// The record just appended for `text`: one line, ending the log.
void CheckRecord(World& world, absl::string_view text) {
  const std::string line = world.NewLines();
  FuzzCheck(absl::EndsWith(line, "}\n") && line.find('\n') == line.size() - 1,
            "a record is one line");
  FuzzCheck(!absl::StrContains(line, "\xe2\x80\xa8") && !absl::StrContains(line, "\xe2\x80\xa9"),
            "no raw line or paragraph separator (U+2028, U+2029)");
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    FuzzCheck(!(line[i] == '\xc2' && static_cast<unsigned char>(line[i + 1]) <= 0x9f),
              "no raw C1 control (U+0080 to U+009F)");
  }
  absl::StatusOr<std::map<std::string, std::string>> record = testing::ParseJsonObject(line);
  FuzzCheck(record.ok(), "a record is one JSON object");
  auto member = record->find("text");
  FuzzCheck(member != record->end(), "a record has a text");
  absl::StatusOr<std::string> decoded = testing::DecodeJsonString(member->second);
  FuzzCheck(decoded.ok(), "the text is a JSON string");
  FuzzCheck(*decoded == text, "the text decodes to what was sent");
  FuzzCheck(absl::EndsWith(line, ",\"text\":" + member->second + "}\n"),
            "the text ends the record");
}

void CheckReply(World& world, capnp::MessageReader& request_message,
                capnp::MessageReader& reply_message) {
  auto reply = reply_message.getRoot<journal::schema::Reply>();
  if (reply.isError()) {
    // Perhaps a refusal, which answers a request nobody read.
    testing::CheckErrorReply(reply.getError());
    return;
  }
  auto request = request_message.getRoot<journal::schema::Request>();
  if (reply.isAppended()) {
    FuzzCheck(request.isAppend(), "appended answers an append");
    FuzzCheck(reply.getAppended().getRun() == world.run, "the run stays");
    FuzzCheck(reply.getAppended().getSeq() == ++world.seq, "records count up by one");
    auto text = request.getAppend();
    CheckRecord(world, absl::string_view(text.cStr(), text.size()));
    return;
  }
  FuzzCheck(reply.isInfo() && request.isInfo(), "info answers info");
  FuzzCheck(reply.getInfo().getRun() == world.run, "info has the run");
  FuzzCheck(reply.getInfo().getRecords() == world.seq, "info counts the records");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Destroyed at exit, so that its TempDir is removed (under Bazel in /tmp:
  // see temp_dir.cc).
  static std::unique_ptr<World> world = std::make_unique<World>();
  world->fuzz->Run(absl::MakeConstSpan(data, size));
  FuzzCheck(world->NewLines().empty(), "nothing but acknowledged records reaches the log");
  FuzzCheck(ftruncate(world->reader.get(), 0) == 0, "the log empties");
  world->read = 0;
  return 0;
}
