// Runs the scanner's fuzz entry point (matcher_fuzz.cc) over databases and
// files written here, and seeded mutations of them, so that it runs in
// `make test`. The entry point aborts on a broken invariant.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "services/scanner/eicar.h"
#include "tests/fixtures/fuzz_corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker::scanner {
namespace {

std::vector<uint8_t> Input(const std::string& database, const std::string& file) {
  std::string input = database;
  input.push_back('\0');
  input += file;
  return std::vector<uint8_t>(input.begin(), input.end());
}

std::vector<std::vector<uint8_t>> Corpus() {
  const std::string eicar = testing::Eicar();
  const std::string overlapping =
      "a:61616161\nb:6161616162\nc:62626262\nlong:6161616161616161\n"
      "inner:61616262\n  # a comment\n\tabab:61626162  \r\n";
  return {
      Input(testing::EicarSignatureLine(), "clean " + eicar + " and after"),
      Input(testing::EicarSignatureLine(), eicar.substr(0, 67)),
      Input(overlapping, "aaaabbbbaaaaab"),
      Input(overlapping, "xxaaabaabbabab"),
      Input(overlapping, "aaaaaaab"),
      // A signature found only through the fail links of a longer one.
      Input("long:6161616162626262\ninner:61616262\n", "aaaabbb"),
      Input(overlapping, std::string(300, 'a')),
      Input("x:00000000\ny:0000000000\n", std::string(5, '\0')),
      Input("", "anything"),
      Input("x:0000000", ""),
      Input("x:000000\n", ""),
      Input("x:00G00000\n", ""),
      Input("x y:00000000\n", ""),
      Input(":00000000\n", ""),
      Input("x\n", ""),
      Input("x:00000000\nx:11111111\n", ""),
      Input(std::string(65, 'n') + ":00000000\n", ""),
      Input("x:" + std::string(2050, 'a'), ""),
  };
}

TEST(MatcherFuzzTest, WrittenInputs) {
  capbroker::testing::RunWrittenCorpus(LLVMFuzzerTestOneInput, "matcher", Corpus());
}

TEST(MatcherFuzzTest, MutatedInputs) {
  capbroker::testing::RunMutatedCorpus(LLVMFuzzerTestOneInput, Corpus(), 500, 20240917);
}

}  // namespace
}  // namespace capbroker::scanner
