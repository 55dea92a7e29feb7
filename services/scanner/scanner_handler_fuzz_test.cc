// Runs the scanner's fuzz entry point (scanner_handler_fuzz.cc) over
// request sequences written here, well-formed and hostile, and seeded
// mutations of them, so that it runs in `make test`. The entry point
// aborts on a broken invariant.
#include <cstdint>
#include <vector>

#include "capnp/message.h"
#include "gtest/gtest.h"
#include "services/scanner/scanner.capnp.h"
#include "tests/fixtures/fuzz_corpus.h"
#include "tests/fixtures/fuzz_datagrams.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker::scanner {
namespace {

enum class Kind { kScan, kInfo };

// One connection's requests, each with the fd count beside it.
std::vector<uint8_t> Requests(const std::vector<std::pair<Kind, size_t>>& requests) {
  std::vector<uint8_t> input;
  for (const auto& [kind, fds] : requests) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    if (kind == Kind::kScan) {
      request.setScan();
    } else {
      request.setInfo();
    }
    testing::AppendMessage(input, message, fds);
  }
  return input;
}

std::vector<uint8_t> Raw(const std::vector<uint8_t>& bytes, size_t fds = 0) {
  std::vector<uint8_t> input;
  testing::AppendDatagram(input, bytes, fds);
  return input;
}

std::vector<std::vector<uint8_t>> Corpus() {
  constexpr size_t kMost = testing::kMaxFdsPerRecord;
  return {
      Requests({{Kind::kInfo, 0}, {Kind::kScan, 1}, {Kind::kInfo, 0}}),
      // Fd counts the handler refuses, and more than the loop takes (2) or
      // the wire allows (17: the connection closes).
      Requests({{Kind::kScan, 0}, {Kind::kInfo, 1}, {Kind::kScan, 2}, {Kind::kInfo, 16}}),
      Requests({{Kind::kScan, kMost}}),
      // A request of a union member this version lacks (9), with an fd,
      // then datagrams that are not messages, or point past their end.
      Raw({0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0}, 1),
      Raw({}),
      Raw({0, 0, 0, 0, 0, 0, 0, 0}, 1),
      Raw({1, 0, 0}),
      Raw({0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}),
      Raw({0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0}),
  };
}

TEST(ScannerHandlerFuzzTest, WrittenInputs) {
  testing::RunWrittenCorpus(LLVMFuzzerTestOneInput, "scanner", Corpus());
}

TEST(ScannerHandlerFuzzTest, MutatedInputs) {
  testing::RunMutatedCorpus(LLVMFuzzerTestOneInput, Corpus(), 200, 20240917);
}

}  // namespace
}  // namespace capbroker::scanner
