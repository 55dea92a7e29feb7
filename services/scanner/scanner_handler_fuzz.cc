// libFuzzer entry point for the scanner's serving of requests: what any
// client the policy lets connect can send it, fds included, and the file it
// hands over to be scanned.
//
// The input is a file and then one connection's request datagrams
// (HandlerFuzz, sdk/service/handler_fuzz.h, with takes_file: the file,
// tests/fixtures/fuzz_file.h, is the first fd of every record; it checks
// what every service owes its clients: one reply a request, every fd
// closed). The file is a memfd holding the input's bytes, or the same open
// for writing only, or a socket end; so scans run the scanner's checks of
// the fd and its reading and matching of hostile contents, over several
// chunks and past the size limit.
//
// Beyond HandlerFuzz's checks, each reply must be the one the request, its
// fd count and the file call for. A verdict is checked against a plain
// search of the contents for every signature: infected names a signature
// that ends first in the file and says how far the scan read (to the end
// of the chunk where it ends), clean means no signature is in the file and
// all of it was read. A broken invariant aborts.
//
// By hand: build as described in broker/policy/policy_parser_fuzz.cc, with
// these sources instead:
//     services/scanner/{eicar,matcher,scanner,scanner_handler,
//     scanner_handler_fuzz,signature_db}.cc sdk/service/{connection_loop,
//     fake_broker,handler_fuzz,loop_harness,rate_limited_log,read_file,
//     try_accept}.cc sdk/client/client.cc sdk/base/{kj_status,log_limiter,
//     syscall,unique_fd}.cc sdk/wire/{channel,datagram,error_code,framing,
//     names,socket_path,unix_socket}.cc tests/fixtures/{fd_count,
//     fuzz_datagrams,fuzz_file,raw_send}.cc
//     bazel-bin/schemas/broker.capnp.c++
//     bazel-bin/services/scanner/scanner.capnp.c++
// and run it with -max_len=70000. In `make test`, scanner_handler_fuzz_test
// runs this function over inputs written in it and mutations of them.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "sdk/service/handler_fuzz.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "services/scanner/scanner.h"
#include "services/scanner/scanner_handler.h"
#include "services/scanner/signature_db.h"
#include "tests/fixtures/fuzz_check.h"
#include "tests/fixtures/fuzz_file.h"

namespace {

using namespace capbroker;  // NOLINT: a fuzz target's file-local helpers
using capbroker::testing::FuzzCheck;
using capbroker::testing::FuzzFileInput;
using capbroker::testing::FuzzFileKind;

// Small, so that each input is cheap and an input's file can span several
// chunks and pass the limit: 4 KiB chunks, 16 KiB at most.
constexpr scanner::Scanner::Options kOptions{.max_file_bytes = 16 << 10, .chunk_bytes = 4096};

// EICAR, and patterns that overlap, are prefixes and suffixes of one
// another and end at the same place, for the matcher's fail links.
std::vector<scanner::Signature> Database() {
  return {{"Eicar-Test-Signature", scanner::testing::Eicar()},
          {"Other", "\x01\x02\x03\x04"},
          {"Abcd", "abcd"},
          {"Bcd", "bcd"},
          {"Cde", "cde"},
          {"Abcdef", "abcdef"}};
}

// What the handler reads of a request: which member it is, no more.
void ReadRequest(capnp::MessageReader& message) {
  message.getRoot<scanner::schema::Request>().which();
}

void CheckError(scanner::schema::Reply::Reader reply, absl::StatusCode code,
                const char* invariant) {
  FuzzCheck(reply.isError() && reply.getError().getCode() == static_cast<uint32_t>(code),
            invariant);
  testing::CheckErrorReply(reply.getError());
  FuzzCheck(reply.getBytesScanned() == 0, "an error scanned nothing");
}

// A verdict on `contents`, checked against a plain search for each
// signature: the first place where one ends, and which end there.
void CheckVerdict(absl::string_view contents, scanner::schema::Reply::Reader reply) {
  size_t first_end = absl::string_view::npos;
  std::vector<std::string> ending_there;
  for (const scanner::Signature& s : Database()) {
    size_t at = contents.find(s.bytes);
    if (at == absl::string_view::npos) continue;
    size_t end = at + s.bytes.size();
    if (end < first_end) {
      first_end = end;
      ending_there.clear();
    }
    if (end == first_end) ending_there.push_back(s.name);
  }
  if (reply.isClean()) {
    FuzzCheck(first_end == absl::string_view::npos, "clean: no signature is in the file");
    FuzzCheck(reply.getBytesScanned() == contents.size(), "clean: the whole file was read");
    return;
  }
  FuzzCheck(reply.isInfected(), "a scan of a readable file within the limit gets a verdict");
  FuzzCheck(first_end != absl::string_view::npos, "infected: a signature is in the file");
  const absl::string_view name(reply.getInfected().cStr(), reply.getInfected().size());
  FuzzCheck(std::find(ending_there.begin(), ending_there.end(), name) != ending_there.end(),
            "infected names a signature that ends first in the file");
  const size_t chunk_end =
      (first_end + kOptions.chunk_bytes - 1) / kOptions.chunk_bytes * kOptions.chunk_bytes;
  FuzzCheck(reply.getBytesScanned() == std::min(contents.size(), chunk_end),
            "infected: read to the end of the chunk where the signature ends");
}

void CheckScan(const FuzzFileInput& file, size_t fds, scanner::schema::Reply::Reader reply) {
  if (fds != 1) {
    CheckError(reply, absl::StatusCode::kInvalidArgument, "a scan takes one fd");
  } else if (file.kind == FuzzFileKind::kSocket) {
    CheckError(reply, absl::StatusCode::kFailedPrecondition, "a socket is no file to scan");
  } else if (file.contents.size() > kOptions.max_file_bytes) {
    CheckError(reply, absl::StatusCode::kResourceExhausted, "a file over the limit is refused");
  } else if (file.kind == FuzzFileKind::kWriteOnly) {
    CheckError(reply, absl::StatusCode::kFailedPrecondition,
               "a file not open for reading is refused");
  } else {
    CheckVerdict(absl::string_view(reinterpret_cast<const char*>(file.contents.data()),
                                   file.contents.size()),
                 reply);
  }
}

void CheckInfo(size_t fds, scanner::schema::Reply::Reader reply) {
  if (fds != 0) {
    CheckError(reply, absl::StatusCode::kInvalidArgument, "info takes no fds");
    return;
  }
  FuzzCheck(reply.isInfo(), "info answers info");
  FuzzCheck(reply.getInfo().getSignatures() == Database().size(), "info counts the signatures");
  FuzzCheck(reply.getInfo().getMaxFileBytes() == kOptions.max_file_bytes,
            "info gives the limit");
  FuzzCheck(reply.getBytesScanned() == 0, "info scanned nothing");
}

// The reply the request, its `fds` and the input's `file` call for.
void CheckReply(const FuzzFileInput& file, size_t fds, capnp::MessageReader& request_message,
                capnp::MessageReader& reply_message) {
  auto reply = reply_message.getRoot<scanner::schema::Reply>();
  if (fds > scanner::ScannerHandler::LoopOptions().max_request_fds) {
    // Refused by the loop, unread: any error, which says why.
    FuzzCheck(reply.isError(), "more fds than any request takes: refused");
    testing::CheckErrorReply(reply.getError());
    FuzzCheck(reply.getBytesScanned() == 0, "an error scanned nothing");
    return;
  }
  auto request = request_message.getRoot<scanner::schema::Request>();
  switch (request.which()) {
    case scanner::schema::Request::SCAN:
      CheckScan(file, fds, reply);
      return;
    case scanner::schema::Request::INFO:
      CheckInfo(fds, reply);
      return;
    default:
      CheckError(reply, absl::StatusCode::kInvalidArgument,
                 "a request this version lacks is refused");
      return;
  }
}

// The handler, with its database, the driver serving it, and the file of
// the input being run.
struct World {
  World()
      : handler(scanner::Scanner(Database(), kOptions)),
        fuzz(handler, scanner::ScannerHandler::LoopOptions(),
             testing::ProtocolChecks{
                 .read_request = ReadRequest,
                 .check_reply =
                     [this](capnp::MessageReader& request, capnp::MessageReader& reply) {
                       CheckReply(file, fuzz.request_fds(), request, reply);
                     },
                 .takes_file = true}) {}
  scanner::ScannerHandler handler;
  testing::HandlerFuzz fuzz;
  FuzzFileInput file;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // never destroyed: it holds no files
  const absl::Span<const uint8_t> input(data, size);
  world->file = testing::SplitFile(input);  // as HandlerFuzz reads it
  world->fuzz.Run(input);
  return 0;
}
