#include "broker/policy/spelling.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace capbroker {
namespace {

const std::vector<std::string> kAccess = {"read", "write", "readWrite", "append"};

TEST(SpellingTest, SuggestsCloseNames) {
  EXPECT_EQ(ClosestName("reed", kAccess), "read");
  EXPECT_EQ(ClosestName("readwrite", kAccess), "readWrite");  // case only
  EXPECT_EQ(ClosestName("apend", kAccess), "append");
  EXPECT_EQ(ClosestName("motdd", {"motd", "spool"}), "motd");
  EXPECT_EQ(ClosestName("pth", {"path", "access", "create"}), "path");
}

TEST(SpellingTest, NoSuggestionForFarOrDegenerateWords) {
  EXPECT_FALSE(ClosestName("banana", kAccess).has_value());
  EXPECT_FALSE(ClosestName("", kAccess).has_value());
  EXPECT_FALSE(ClosestName("x", {"y"}).has_value());  // every letter changed
  EXPECT_FALSE(ClosestName("read", kAccess).has_value());  // exact: nothing to fix
  EXPECT_FALSE(ClosestName(std::string(kMaxSpellingLength + 1, 'a'),
                           {std::string(kMaxSpellingLength, 'a')})
                   .has_value());
}

TEST(SpellingTest, DidYouMeanFormatsOrIsEmpty) {
  EXPECT_EQ(DidYouMean("reed", kAccess), "; did you mean 'read'?");
  EXPECT_EQ(DidYouMean("banana", kAccess), "");
}

// A candidate is text of the policy: quoted escaped, so that the hint stays
// on its error's line and no escape sequence reaches a terminal.
TEST(SpellingTest, DidYouMeanEscapesTheSuggestion) {
  EXPECT_EQ(DidYouMean("ab", {"a\nb"}), "; did you mean 'a\\x0ab'?");
  EXPECT_EQ(DidYouMean("mX[2Jd", {"m\x1b[2Jd"}), "; did you mean 'm\\x1b[2Jd'?");
}

}  // namespace
}  // namespace capbroker
