// Runs the scanner's fuzz entry point (scanner_handler_fuzz.cc) over
// inputs written here, files and request sequences, well-formed and
// hostile, and seeded mutations of them, so that it runs in `make test`.
// The entry point aborts on a broken invariant.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "capnp/message.h"
#include "gtest/gtest.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner.capnp.h"
#include "tests/fixtures/fuzz_corpus.h"
#include "tests/fixtures/fuzz_datagrams.h"
#include "tests/fixtures/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker::scanner {
namespace {

namespace fixtures = ::capbroker::testing;
using fixtures::FuzzFileKind;

enum class Kind { kScan, kInfo };

// The input's file: `kind`, holding `contents`.
std::vector<uint8_t> File(FuzzFileKind kind, const std::string& contents) {
  std::vector<uint8_t> input;
  fixtures::AppendFile(input, kind,
                      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(contents.data()),
                                          contents.size()));
  return input;
}

// `file`, then one connection's requests, each with the fd count beside it.
std::vector<uint8_t> Requests(std::vector<uint8_t> file,
                              const std::vector<std::pair<Kind, size_t>>& requests) {
  for (const auto& [kind, fds] : requests) {
    capnp::MallocMessageBuilder message;
    auto request = message.initRoot<schema::Request>();
    if (kind == Kind::kScan) {
      request.setScan();
    } else {
      request.setInfo();
    }
    fixtures::AppendMessage(file, message, fds);
  }
  return file;
}

// A readable file holding `contents`, scanned once.
std::vector<uint8_t> Scanned(const std::string& contents) {
  return Requests(File(FuzzFileKind::kReadable, contents), {{Kind::kScan, 1}});
}

std::vector<uint8_t> Raw(const std::vector<uint8_t>& bytes, size_t fds = 0) {
  std::vector<uint8_t> input = File(FuzzFileKind::kReadable, testing::Eicar());
  fixtures::AppendDatagram(input, bytes, fds);
  return input;
}

std::vector<std::vector<uint8_t>> Corpus() {
  constexpr size_t kMost = fixtures::kMaxFdsPerRecord;
  constexpr size_t kChunk = 4096;     // the target's chunk
  constexpr size_t kLimit = 16 << 10;  // and its limit
  return {
      Requests(File(FuzzFileKind::kReadable, "x" + testing::Eicar()),
               {{Kind::kInfo, 0}, {Kind::kScan, 1}, {Kind::kInfo, 0}, {Kind::kScan, 1}}),
      Scanned("nothing to see here"),
      Scanned(""),
      // Across chunks: EICAR, and a short pattern, straddling a boundary;
      // one that ends a chunk exactly; one in the last, partial chunk.
      Scanned(std::string(kChunk - 20, 'x') + testing::Eicar() + "tail"),
      Scanned(std::string(kChunk - 2, '.') + "\x01\x02\x03\x04"),
      Scanned(std::string(kChunk - 4, '.') + "\x01\x02\x03\x04" + std::string(10, '.')),
      Scanned(std::string(2 * kChunk + 7, '.') + "cde"),
      // Patterns that overlap, end at the same place, or are prefixes of
      // one another; near misses.
      Scanned("abcdef"),
      Scanned("xabcxbcdx"),
      Scanned("abccdeab\x01\x02\x03"),
      Scanned(testing::Eicar().substr(0, 67) + "!" + testing::Eicar().substr(1)),
      // At the limit, and past it.
      Scanned(std::string(kLimit, 'z')),
      Scanned(std::string(kLimit + 1, 'z') + testing::Eicar()),
      // Files the scanner refuses: not open for reading, or a socket.
      Requests(File(FuzzFileKind::kWriteOnly, testing::Eicar()), {{Kind::kScan, 1}}),
      Requests(File(FuzzFileKind::kSocket, testing::Eicar()),
               {{Kind::kScan, 1}, {Kind::kInfo, 0}}),
      // Fd counts the handler refuses, and more than the loop takes (2) or
      // the wire allows (17: the connection closes).
      Requests(File(FuzzFileKind::kReadable, "abcd"),
               {{Kind::kScan, 0}, {Kind::kInfo, 1}, {Kind::kScan, 2}, {Kind::kInfo, 16}}),
      Requests(File(FuzzFileKind::kReadable, "abcd"), {{Kind::kScan, kMost}}),
      // A request of a union member this version lacks (9), with an fd,
      // then datagrams that are not messages, or point past their end.
      Raw({0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0}, 1),
      Raw({}),
      Raw({0, 0, 0, 0, 0, 0, 0, 0}, 1),
      Raw({1, 0, 0}),
      Raw({0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}),
      Raw({0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0}),
      {},
  };
}

TEST(ScannerHandlerFuzzTest, WrittenInputs) {
  fixtures::RunWrittenCorpus(LLVMFuzzerTestOneInput, "scanner", Corpus());
}

TEST(ScannerHandlerFuzzTest, MutatedInputs) {
  fixtures::RunMutatedCorpus(LLVMFuzzerTestOneInput, Corpus(), 200, 20240917);
}

}  // namespace
}  // namespace capbroker::scanner
