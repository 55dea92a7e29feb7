// Runs the fuzz entry point over a fixed corpus of hostile inputs and
// deterministic mutations of valid policies, so that it runs in `make test`.
// The entry point aborts on a broken invariant; the tests below also check
// that mutations are refused where they must be.
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/list_sizes.h"
#include "broker/policy/policy_parser.h"
#include "broker/policy/policy_parser_fuzz.h"
#include "broker/policy/starter_policy.h"
#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace capbroker {
namespace {

constexpr absl::string_view kExample = R"(( capabilities = [
    ( name = "motd",    file = ( path = "/etc/motd", access = read ) ),
    ( name = "spool",   directory = ( path = "/var/spool/demo", access = readWrite ) ),
    ( name = "scratch", memory = ( size = 65536 ) ) ],
  principals = [
    ( name = "ops", match = ( uid = 1000 ), grants = [ "motd", "spool", "scratch" ] ) ] ))";

void Fuzz(absl::string_view input) {
  ASSERT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                                   input.size()),
            0);
}

// A string literal's bytes, NULs included.
template <size_t N>
std::string Bytes(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

// Bytes that change meaning in the text format.
constexpr char kSpecial[] = {'(', ')', '[', ']', ',', '=', '"', '\\', '#', '\n', '0',
                             '9', 'x', '-', '.', ' ', '\0', '\x7f', '\xff', 'a'};

TEST(PolicyParserFuzzTest, HostileInputs) {
  std::vector<std::string> corpus = {
      "",
      "()",
      "(",
      ")",
      std::string(200000, '('),
      std::string(200000, '['),
      std::string("\0\0\0\0", 4),
      "\x7f" "ELF\x02\x01\x01\x00",
      "( capabilities = [ ( name = \"" + std::string(900000, 'x') + "\" ) ] )",
      "( " + std::string(500000, 'a') + " = 1 )",
      "( a " + std::string(500000, 'b') + " )",
      "( capabilities = [ ( name = \"m\", file = ( access = " + std::string(500000, 'r') + " ) ) ] )",
      std::string(kMaxPolicyBytes + 1, ' '),
      "( principals = [ ( match = ( uid = 99999999999999999999999 ) ) ] )",
      "( principals = [ ( match = ( uid = -99999999999999999999999 ) ) ] )",
      "( principals = [ ( match = ( uid = 1e999 ) ) ] )",
      "( capabilities = [ ( name = \"\\xff\\x00\\377\" ) ] )",
      "( capabilities = [], capabilities = [], principals = [] )",
      "( capabilities = [ ( unset = void, memory = ( size = 1 ), file = () ) ] )",
      "( a = inf, b = nan, c = void, d = true )",
      // Invalid names one edit from a grant: never suggested raw.
      "( capabilities = [ ( name = \"m\\x1b[2Jd\", memory = ( size = 1 ) ),"
      " ( name = \"a\\nb\", memory = ( size = 1 ) ) ], principals = [ ( name = \"p\","
      " match = ( uid = 1 ), grants = [ \"mX[2Jd\", \"ab\" ] ) ] )",
      std::string(StarterPolicyText()),
  };
  std::string many = "( capabilities = [";
  for (int i = 0; i < 5000; ++i) absl::StrAppend(&many, "( name = \"", i % 7, "\" ),");
  corpus.push_back(many + "] )");
  for (const std::string& input : corpus) Fuzz(input);
}

TEST(PolicyParserFuzzTest, EveryProperPrefixOfTheExampleIsRefused) {
  for (size_t length = 0; length < kExample.size(); ++length) {
    absl::string_view prefix = kExample.substr(0, length);
    Fuzz(prefix);
    EXPECT_FALSE(ParsePolicy(prefix, "p").ok()) << prefix;
  }
  EXPECT_TRUE(ParsePolicy(kExample, "p").ok());
}

TEST(PolicyParserFuzzTest, SingleByteMutationsOfTheExample) {
  std::string text(kExample);
  for (size_t i = 0; i < text.size(); ++i) {
    std::string deleted = text;
    deleted.erase(i, 1);
    Fuzz(deleted);
    for (char c : kSpecial) {
      std::string replaced = text;
      replaced[i] = c;
      Fuzz(replaced);
      std::string inserted = text;
      inserted.insert(i, 1, c);
      Fuzz(inserted);
    }
  }
}

TEST(PolicyParserFuzzTest, RandomMutationsOfTheStarterPolicy) {
  std::mt19937 random(20240611);
  std::string base(StarterPolicyText());
  for (int round = 0; round < 3000; ++round) {
    std::string text = base;
    int edits = 1 + random() % 8;
    for (int e = 0; e < edits; ++e) {
      size_t at = random() % text.size();
      switch (random() % 4) {
        case 0: text[at] = static_cast<char>(random()); break;
        case 1: text.erase(at, 1 + random() % 16); break;
        case 2: text.insert(at, text.substr(random() % text.size(), random() % 64)); break;
        case 3: text[at] = kSpecial[random() % sizeof(kSpecial)]; break;
      }
      if (text.empty()) text = "(";
    }
    Fuzz(text);
  }
}

// The seed policy_parser_fuzz.cc tells to start from: a short input that
// stands for a policy past the value limit, refused there with a clear
// error, through the fuzz entry too. The value past the limit is the field
// `a` of the 65,536th fragment (the head holds the first).
TEST(PolicyParserFuzzTest, ARepeatedFragmentReachesTheValueLimit) {
  const std::string input = Bytes("\x01\x00\x00\x02(a=[]\x01,a=[]\x01)");
  Fuzz(input);
  const std::string text = PolicyFuzzText(input);
  ASSERT_EQ(text.size(), 5 + 131072 * 5 + 1);
  const size_t column = 5 + (kMaxPolicyValues - 1) * 5 + 2;
  EXPECT_EQ(ParsePolicy(text, "fuzz.cb").status(),
            absl::InvalidArgumentError(absl::StrCat(
                "fuzz.cb:1:", column, ": too many values: this one is past the ",
                kMaxPolicyValues, " fields and list entries that a policy may hold together")));
}

// However large the count, the text stops one byte past the size limit,
// where it is refused before it is parsed.
TEST(PolicyParserFuzzTest, ARepeatedFragmentStopsPastTheSizeLimit) {
  const std::string input = Bytes("\x01\xff\xff\xff(\x01 \x01)");
  Fuzz(input);
  const std::string text = PolicyFuzzText(input);
  EXPECT_EQ(text.size(), kMaxFuzzTextBytes);
  EXPECT_EQ(ParsePolicy(text, "fuzz.cb").status().code(), absl::StatusCode::kResourceExhausted);
}

// The format, pinned: an input without the mark is the text itself.
TEST(PolicyParserFuzzTest, WhatAFuzzInputStandsFor) {
  EXPECT_EQ(PolicyFuzzText(""), "");
  EXPECT_EQ(PolicyFuzzText("( a = [] )\x01"), "( a = [] )\x01");
  EXPECT_EQ(PolicyFuzzText(std::string(1, kRepeatMark)), "");
  EXPECT_EQ(PolicyFuzzText(Bytes("\x01\x02\x00\x00" "ab\x01" "c")), "abcc");
  EXPECT_EQ(PolicyFuzzText(Bytes("\x01\x03\x00\x00" "(\x01" "0\x01" ")\x01")),
            "(000)\x01");
}

}  // namespace
}  // namespace capbroker
