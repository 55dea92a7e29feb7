#include "broker/policy/excerpt.h"

#include <string>

#include "gtest/gtest.h"

namespace capbroker {
namespace {

TEST(ExcerptTest, KeepsPrintableAsciiAndEscapesTheRest) {
  EXPECT_EQ(Excerpt("\"motd\" x"), "\"motd\" x");
  EXPECT_EQ(Excerpt(std::string("a\nb\0c\xff", 6)), "a\\x0ab\\x00c\\xff");
  EXPECT_EQ(Quoted("motd"), "'motd'");
}

TEST(ExcerptTest, CutsLongText) {
  EXPECT_EQ(Excerpt("abcdef", 3), "abc...");
  EXPECT_EQ(Excerpt("abc", 3), "abc");
  EXPECT_EQ(Quoted(std::string(1 << 20, 'x')).size(), kExcerptBytes + 5);
}

}  // namespace
}  // namespace capbroker
