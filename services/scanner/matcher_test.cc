#include "services/scanner/matcher.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker::scanner {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::optional<size_t> FindAll(const Matcher& m, const std::string& text) {
  Matcher::State state = Matcher::kStart;
  return m.Feed(state, Bytes(text));
}

TEST(MatcherTest, FindsEachPatternAndNothingElse) {
  Matcher m({{"a", "abcd"}, {"b", "bcde"}, {"c", "xyzw"}});
  EXPECT_EQ(FindAll(m, "--abcd--"), 0u);
  EXPECT_EQ(FindAll(m, "--abcde-"), 0u);  // the first to end
  EXPECT_EQ(FindAll(m, "-abcxbcde"), 1u);
  EXPECT_EQ(FindAll(m, "xyzxyzw"), 2u);   // a restart inside a partial match
  EXPECT_EQ(FindAll(m, "abc bcd xyz"), std::nullopt);
  EXPECT_EQ(FindAll(m, ""), std::nullopt);
}

TEST(MatcherTest, FindsAPatternInsideAnotherOnesPrefix) {
  Matcher m({{"long", "aaaabbbb"}, {"inner", "aabb"}});
  EXPECT_EQ(FindAll(m, "aaaabbb"), 1u);  // via the fail links
}

TEST(MatcherTest, FindsAPatternAcrossFeeds) {
  Matcher m(std::vector<Signature>{{"a", "0123456789"}});
  const std::string text = "xx0123456789yy";
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    Matcher::State state = Matcher::kStart;
    std::optional<size_t> first = m.Feed(state, Bytes(text.substr(0, cut)));
    std::optional<size_t> second = m.Feed(state, Bytes(text.substr(cut)));
    EXPECT_EQ(first.has_value() || second.has_value(), true) << "cut at " << cut;
  }
}

TEST(MatcherTest, AgreesWithANaiveSearchOnRandomInput) {
  std::mt19937 random(7);
  auto text_of = [&](size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s.push_back("abc\xff"[random() % 4]);
    return s;
  };
  for (int round = 0; round < 200; ++round) {
    std::vector<Signature> signatures;
    for (int i = 0; i < 5; ++i) signatures.push_back({std::to_string(i), text_of(4 + random() % 3)});
    Matcher m(signatures);
    const std::string text = text_of(60);
    size_t best_end = std::string::npos;
    for (size_t i = 0; i < signatures.size(); ++i) {
      size_t at = text.find(signatures[i].bytes);
      if (at != std::string::npos) best_end = std::min(best_end, at + signatures[i].bytes.size());
    }
    std::optional<size_t> found = FindAll(m, text);
    ASSERT_EQ(found.has_value(), best_end != std::string::npos) << text;
    if (found) {
      // The reported pattern ends at the earliest end of any match.
      const std::string& p = signatures[*found].bytes;
      EXPECT_EQ(text.substr(best_end - p.size(), p.size()), p);
    }
  }
}

}  // namespace
}  // namespace capbroker::scanner
