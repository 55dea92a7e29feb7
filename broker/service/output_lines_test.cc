#include "broker/service/output_lines.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(OutputLinesTest, JoinsPiecesIntoLines) {
  OutputLines lines;
  EXPECT_THAT(lines.Add("hel"), IsEmpty());
  EXPECT_THAT(lines.Add("lo\nwor"), ElementsAre("hello"));
  EXPECT_THAT(lines.Add("ld\n\n"), ElementsAre("world", ""));
  EXPECT_THAT(lines.Add("tail"), IsEmpty());
  EXPECT_THAT(lines.Finish(), ElementsAre("tail"));
  EXPECT_THAT(lines.Finish(), IsEmpty());
}

TEST(OutputLinesTest, ControlCharactersCannotForgeLines) {
  OutputLines lines;
  EXPECT_THAT(lines.Add("a\rcapbrokerd: fake\x1b[2J\tb\n"),
              ElementsAre("a?capbrokerd: fake?[2J\tb"));
}

TEST(OutputLinesTest, LongLinesAreCut) {
  OutputLines lines;
  std::string big(kMaxLineBytes * 2 + 10, 'x');
  std::vector<std::string> out = lines.Add(big + "\n");
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].size(), kMaxLineBytes);
  EXPECT_EQ(out[1].size(), kMaxLineBytes);
  EXPECT_EQ(out[2].size(), 10u);
}

}  // namespace
}  // namespace capbroker::service
