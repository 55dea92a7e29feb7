// Runs the journal's fuzz entry point (journal_handler_fuzz.cc) over
// request sequences written here, well-formed and hostile, and seeded
// mutations of them, so that it runs in `make test`. The entry point
// aborts on a broken invariant.
#include <cstdint>
#include <string>
#include <vector>

#include "capnp/message.h"
#include "gtest/gtest.h"
#include "services/journal/journal.capnp.h"
#include "tests/fixtures/fuzz_datagrams.h"
#include "tests/fixtures/fuzz_corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker::journal {
namespace {

// A request to append each text, then one for info; each with `fds` fds.
std::vector<uint8_t> Appends(const std::vector<std::string>& texts, size_t fds = 0) {
  std::vector<uint8_t> input;
  for (const std::string& text : texts) {
    capnp::MallocMessageBuilder message;
    message.initRoot<schema::Request>().setAppend(capnp::Text::Reader(text.data(), text.size()));
    testing::AppendMessage(input, message, fds);
  }
  capnp::MallocMessageBuilder info;
  info.initRoot<schema::Request>().setInfo();
  testing::AppendMessage(input, info, fds);
  return input;
}

std::vector<std::vector<uint8_t>> Corpus() {
  std::string every_byte;
  for (int c = 0; c < 256; ++c) every_byte.push_back(static_cast<char>(c));
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls.push_back(static_cast<char>(c));
  controls += "\x7f\"\\/";
  return {
      Appends({"hello", "", "two\nlines", "tab\there", controls}),
      Appends({"caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf",
               "\xf4\x8f\xbf\xbf", "\xe2\x80\xa8 \xe2\x80\xa9",
               // C1 controls (CSI, U+009B, starts a terminal escape) and a neighbour.
               "a\xc2\x9b" "31mX", "\xc2\x80\xc2\x85\xc2\x9f\xc2\xa0"}),
      // Not UTF-8: overlong forms, surrogates, beyond U+10FFFF, cut short.
      Appends({"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
               "\xc3", "\xe2\x82", "\x80", every_byte}),
      Appends({std::string(4096, 'x'), std::string(4097, 'x'), std::string(4096, '\x01'),
               std::string(2048, '"')}),
      Appends({"x"}, 1),
      Appends({"x"}, testing::kMaxFdsPerRecord),
  };
}

TEST(JournalHandlerFuzzTest, WrittenInputs) {
  testing::RunWrittenCorpus(LLVMFuzzerTestOneInput, "journal", Corpus());
}

TEST(JournalHandlerFuzzTest, MutatedInputs) {
  testing::RunMutatedCorpus(LLVMFuzzerTestOneInput, Corpus(), 200, 20240916);
}

}  // namespace
}  // namespace capbroker::journal
