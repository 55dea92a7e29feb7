#include "broker/policy/text_locator.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

constexpr absl::string_view kExample = R"(( capabilities = [
    ( name = "motd",    file = ( path = "/etc/motd", access = read ) ),
    ( name = "spool",   directory = ( path = "/var/spool/demo", access = readWrite ) ),
    ( name = "scratch", memory = ( size = 65536 ) ) ],
  principals = [
    ( name = "ops", match = ( uid = 1000 ), grants = [ "motd", "spool", "scratch" ] ) ] )
)";

size_t OffsetOfText(absl::string_view text, absl::string_view needle) {
  size_t offset = text.find(needle);
  EXPECT_NE(offset, absl::string_view::npos) << needle;
  return offset;
}

TEST(TextLocatorTest, ParsesExampleWithoutError) {
  TextLocator locator = TextLocator::Parse(kExample);
  ASSERT_FALSE(locator.syntax_error().has_value()) << locator.syntax_error()->message;
  ASSERT_NE(locator.root(), nullptr);
  EXPECT_EQ(locator.root()->kind, TextValueKind::kStruct);
  EXPECT_EQ(locator.root()->children.size(), 2u);
}

TEST(TextLocatorTest, PathAtValueAndAtFieldName) {
  TextLocator locator = TextLocator::Parse(kExample);
  EXPECT_EQ(locator.PathAt(OffsetOfText(kExample, "read ")), "capabilities[0].file.access");
  EXPECT_EQ(locator.PathAt(OffsetOfText(kExample, "65536")), "capabilities[2].memory.size");
  // On the field name itself, the path is that field's.
  EXPECT_EQ(locator.PathAt(OffsetOfText(kExample, "uid")), "principals[0].match.uid");
  EXPECT_EQ(locator.PathAt(OffsetOfText(kExample, "\"spool\", \"scratch\"")),
            "principals[0].grants[1]");
  // Punctuation inside a struct belongs to the struct.
  EXPECT_EQ(locator.PathAt(OffsetOfText(kExample, "( path = \"/etc")), "capabilities[0].file");
  EXPECT_EQ(locator.PathAt(0), "");
  EXPECT_EQ(locator.PathAt(kExample.size() + 5), "");
}

TEST(TextLocatorTest, OffsetOfPathAndNearestAncestor) {
  TextLocator locator = TextLocator::Parse(kExample);
  EXPECT_EQ(locator.OffsetOf("capabilities[1].directory.path"),
            OffsetOfText(kExample, "\"/var/spool/demo\""));
  EXPECT_EQ(locator.OffsetOf("principals[0].grants[2]"),
            OffsetOfText(kExample, "\"scratch\" ]"));
  // Left-out fields resolve to the struct that lacks them.
  EXPECT_EQ(locator.Find("capabilities[2].memory.shared"), nullptr);
  EXPECT_EQ(locator.OffsetOf("capabilities[2].memory.shared"),
            OffsetOfText(kExample, "( size = 65536"));
  EXPECT_EQ(locator.OffsetOf("capabilities[7].file"), OffsetOfText(kExample, "["));
}

TEST(TextLocatorTest, PathOfEveryNodeRoundTrips) {
  TextLocator locator = TextLocator::Parse(kExample);
  for (const TextNode& node : locator.nodes()) {
    EXPECT_EQ(locator.Find(locator.PathOf(node)), &node) << locator.PathOf(node);
  }
}

TEST(TextLocatorTest, RepeatedFieldResolvesToLastLikeTextCodec) {
  constexpr absl::string_view kText = "(a = 1, a = 2)";
  TextLocator locator = TextLocator::Parse(kText);
  ASSERT_NE(locator.Find("a"), nullptr);
  EXPECT_EQ(locator.SourceOf(*locator.Find("a")), "2");
}

TEST(TextLocatorTest, SourceOfKeepsLiteralSpelling) {
  constexpr absl::string_view kText = "(mode = 0600, neg = - 5, s = \"a\" \"b\", f = 1.5e3)";
  TextLocator locator = TextLocator::Parse(kText);
  ASSERT_FALSE(locator.syntax_error().has_value());
  EXPECT_EQ(locator.SourceOf(*locator.Find("mode")), "0600");
  EXPECT_EQ(locator.Find("mode")->kind, TextValueKind::kInteger);
  EXPECT_EQ(locator.SourceOf(*locator.Find("neg")), "- 5");
  EXPECT_EQ(locator.SourceOf(*locator.Find("s")), "\"a\" \"b\"");
  EXPECT_EQ(locator.Find("s")->kind, TextValueKind::kString);
  EXPECT_EQ(locator.Find("f")->kind, TextValueKind::kFloat);
}

TEST(TextLocatorTest, CommentsAndHashInsideStrings) {
  constexpr absl::string_view kText = "# comment ( [\n(a = \"#not a comment\", # c\n b = x)";
  TextLocator locator = TextLocator::Parse(kText);
  ASSERT_FALSE(locator.syntax_error().has_value()) << locator.syntax_error()->message;
  EXPECT_EQ(locator.SourceOf(*locator.Find("a")), "\"#not a comment\"");
  EXPECT_EQ(locator.Find("b")->kind, TextValueKind::kIdentifier);
}

TEST(TextLocatorTest, TrailingCommasAcceptedAsInTextCodec) {
  TextLocator locator = TextLocator::Parse("(a = [1, 2,], b = (c = 1,),)");
  EXPECT_FALSE(locator.syntax_error().has_value()) << locator.syntax_error()->message;
}

TEST(TextLocatorTest, LineColumnCountsCharacters) {
  constexpr absl::string_view kText = "(a = 1,\n  b = \"\xc3\xa9t\xc3\xa9\", c = 2)";
  TextLocator locator = TextLocator::Parse(kText);
  EXPECT_EQ(locator.LineColumnAt(0).line, 1u);
  EXPECT_EQ(locator.LineColumnAt(0).column, 1u);
  LineColumn b = locator.LineColumnAt(OffsetOfText(kText, "b ="));
  EXPECT_EQ(b.line, 2u);
  EXPECT_EQ(b.column, 3u);
  // "été" is 5 bytes but 3 characters.
  LineColumn c = locator.LineColumnAt(OffsetOfText(kText, "c ="));
  EXPECT_EQ(c.line, 2u);
  EXPECT_EQ(c.column, 14u);
  EXPECT_EQ(locator.LineStart(2), OffsetOfText(kText, "  b"));
  EXPECT_EQ(locator.LineColumnAt(10000).line, 2u);
}

TEST(SplitPathTest, SplitsFieldsAndIndices) {
  auto steps = SplitPath("capabilities[1].file.access");
  ASSERT_TRUE(steps.has_value());
  ASSERT_EQ(steps->size(), 4u);
  EXPECT_EQ((*steps)[0].field, "capabilities");
  EXPECT_EQ((*steps)[1].index, 1u);
  EXPECT_EQ((*steps)[3].field, "access");
  EXPECT_TRUE(SplitPath("")->empty());
  EXPECT_FALSE(SplitPath("a[x]").has_value());
  EXPECT_FALSE(SplitPath("a..b").has_value());
  EXPECT_FALSE(SplitPath(".a").has_value());
}

struct SyntaxCase {
  const char* text;
  const char* at;  // the error's offset is where this first occurs
  const char* message;
};

class SyntaxErrorTest : public ::testing::TestWithParam<SyntaxCase> {};

TEST_P(SyntaxErrorTest, ReportsOffsetAndMessage) {
  const SyntaxCase& c = GetParam();
  absl::string_view text(c.text);
  TextLocator locator = TextLocator::Parse(text);
  ASSERT_TRUE(locator.syntax_error().has_value()) << text;
  EXPECT_EQ(locator.syntax_error()->offset, text.find(c.at)) << locator.syntax_error()->message;
  EXPECT_THAT(locator.syntax_error()->message, HasSubstr(c.message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SyntaxErrorTest,
    ::testing::Values(
        SyntaxCase{"", "", "the text is empty"},
        SyntaxCase{"  # only a comment\n", "  #", "the text is empty"},
        SyntaxCase{"[1]", "[", "expected '(' to open the top-level struct"},
        SyntaxCase{"(a = 1", "(", "'(' is never closed"},
        SyntaxCase{"(a = [1, 2)", ")", "expected ',' or ']'"},
        SyntaxCase{"(a 1)", "1", "expected '=' after field name 'a'"},
        SyntaxCase{"(a =-1)", "=-", "put spaces around '='"},
        SyntaxCase{"(a = \"x\" b = 2)", "b", "expected ',' or ')' after the value of 'a'"},
        SyntaxCase{"(a = 1) (b = 2)", "(b", "after the end of the top-level struct"},
        SyntaxCase{"(a = [1,,2])", ",2", "empty list element"},
        SyntaxCase{"(a = [,1])", ",1", "empty list element"},
        SyntaxCase{"(, a = 1)", ",", "expected a field name or ')'"},
        SyntaxCase{"(a = )", ")", "expected a value, found ')'"},
        SyntaxCase{"(a = - b)", "-", "'-' must be followed by a number"},
        SyntaxCase{"(a = 0999)", "0999", "a leading 0 makes a number octal"},
        SyntaxCase{"(a = 18446744073709551616)", "1844", "does not fit in 64 bits"},
        SyntaxCase{"(a = 0x10000000000000000)", "0x1", "does not fit in 64 bits"},
        SyntaxCase{"(a = 0X10)", "0X10", "malformed number"},
        SyntaxCase{"(a = 1e)", "1e", "exponent without digits"},
        SyntaxCase{"(a = 12abc)", "12abc", "malformed number"},
        SyntaxCase{"(a = 'x')", "'x'", "unexpected character '''"},
        SyntaxCase{"(a = \"x\\q\")", "\\q", "invalid escape '\\q'"},
        SyntaxCase{"(a = \"x\\x4\")", "\\x4", "invalid escape"},
        SyntaxCase{"(a = \"abc\n\")", "\"abc", "not closed before the end of the line"},
        SyntaxCase{"(a = \"abc", "\"abc", "string is not closed"},
        SyntaxCase{"(a = .read)", ".read", "unexpected '.'"},
        SyntaxCase{"(a = x.y)", ".y", "expected ',' or ')'"},
        SyntaxCase{"(a = {})", "{", "unexpected character '{'"},
        SyntaxCase{"(a = \x01)", "\x01", "unexpected character '\\x01'"},
        SyntaxCase{"(a = 1;)", ";", "unexpected character ';'"}));

TEST(TextLocatorTest, NulByteIsAnError) {
  std::string text = "(a = \"xZy\")";
  text[7] = '\0';
  TextLocator locator = TextLocator::Parse(text);
  ASSERT_TRUE(locator.syntax_error().has_value());
  EXPECT_EQ(locator.syntax_error()->offset, 7u);
  EXPECT_THAT(locator.syntax_error()->message, HasSubstr("NUL byte"));
  std::string in_comment = "(a = 1) # x\n";
  in_comment[10] = '\0';
  TextLocator comment = TextLocator::Parse(in_comment);
  ASSERT_TRUE(comment.syntax_error().has_value());
  EXPECT_EQ(comment.syntax_error()->offset, 10u);
}

std::string Nested(int depth) {
  std::string text = "(";
  for (int i = 0; i < depth - 1; ++i) text += "a = (";
  text += std::string(depth, ')');
  return text;
}

TEST(TextLocatorTest, NestingUpToTheLimitIsAccepted) {
  TextLocator locator = TextLocator::Parse(Nested(kMaxTextNesting));
  EXPECT_FALSE(locator.syntax_error().has_value()) << locator.syntax_error()->message;
}

TEST(TextLocatorTest, NestingBeyondTheLimitIsRefused) {
  std::string text = Nested(kMaxTextNesting + 1);
  TextLocator locator = TextLocator::Parse(text);
  ASSERT_TRUE(locator.syntax_error().has_value());
  EXPECT_THAT(locator.syntax_error()->message, HasSubstr("nesting deeper than"));
}

TEST(TextLocatorTest, HugeNestingDoesNotRecurseUnbounded) {
  TextLocator locator = TextLocator::Parse(std::string(1 << 20, '['));
  ASSERT_TRUE(locator.syntax_error().has_value());
  EXPECT_THAT(locator.syntax_error()->message, HasSubstr("expected '('"));
  TextLocator parens = TextLocator::Parse(std::string(1 << 20, '('));
  ASSERT_TRUE(parens.syntax_error().has_value());
  EXPECT_THAT(parens.syntax_error()->message, HasSubstr("expected a field name"));
  std::string fields;
  for (int i = 0; i < 100000; ++i) fields += "(a = [";
  TextLocator deep = TextLocator::Parse(fields);
  ASSERT_TRUE(deep.syntax_error().has_value());
  EXPECT_THAT(deep.syntax_error()->message, HasSubstr("nesting deeper than"));
}

TEST(TextLocatorTest, PartialTreeAfterErrorStillLocates) {
  constexpr absl::string_view kText = "(caps = [(name = \"a\", file = (path = 1 2)])";
  TextLocator locator = TextLocator::Parse(kText);
  ASSERT_TRUE(locator.syntax_error().has_value());
  EXPECT_EQ(locator.PathOf(locator.nodes().back()), "caps[0].file.path");
}

// Past `max_values`, the tree holds the value that passes them and no
// more, while the rest of the text is still checked and the entries of
// what is still open still counted.
TEST(TextLocatorTest, TheTreeStopsAtTheValuePastItsLimit) {
  // 10 values: a, a[0], a[0][0], a[0][1], a[1], a[1].b, a[1].b.c, a[2],
  // a[3], d.
  constexpr absl::string_view kText = "(a = [ [1, 2], (b = (c = 3)), 4, 5 ], d = 6)";
  TextLocator whole = TextLocator::Parse(kText);
  EXPECT_EQ(whole.nodes().size(), 11u);
  EXPECT_EQ(whole.value_past_limit(), nullptr);
  TextLocator exactly = TextLocator::Parse(kText, 10);
  EXPECT_EQ(exactly.nodes().size(), 11u);
  EXPECT_EQ(exactly.value_past_limit(), nullptr);

  TextLocator locator = TextLocator::Parse(kText, 6);
  ASSERT_FALSE(locator.syntax_error().has_value()) << locator.syntax_error()->message;
  ASSERT_EQ(locator.nodes().size(), 8u);  // the root, 6 values, and a[1].b.c
  ASSERT_EQ(locator.value_past_limit(), &locator.nodes().back());
  EXPECT_EQ(locator.PathOf(*locator.value_past_limit()), "a[1].b.c");
  EXPECT_EQ(locator.max_values(), 6u);
  // What was open then is counted and closed all the same.
  const TextNode& root = locator.nodes()[0];
  const TextNode& a = *locator.Find("a");
  EXPECT_EQ(root.entries, 2u);
  EXPECT_EQ(root.children.size(), 1u);
  EXPECT_EQ(a.entries, 4u);
  EXPECT_EQ(a.children.size(), 2u);
  EXPECT_EQ(locator.SourceOf(root), kText);
  EXPECT_EQ(locator.SourceOf(a), "[ [1, 2], (b = (c = 3)), 4, 5 ]");
  EXPECT_EQ(locator.Find("d"), nullptr);  // never built

  // A value past the limit that is itself a list counts its entries.
  TextLocator list = TextLocator::Parse(kText, 1);
  ASSERT_EQ(list.nodes().size(), 3u);
  EXPECT_EQ(list.value_past_limit()->entries, 2u);
  EXPECT_TRUE(list.value_past_limit()->children.empty());
}

TEST(TextLocatorTest, ASyntaxErrorPastTheLimitIsStillFound) {
  constexpr absl::string_view kText = "(a = [1, 2, 3, 4, 5], b = [6, 7 8])";
  TextLocator locator = TextLocator::Parse(kText, 2);
  ASSERT_TRUE(locator.syntax_error().has_value());
  EXPECT_EQ(locator.syntax_error()->offset, OffsetOfText(kText, "8"));
  EXPECT_EQ(locator.nodes().size(), 4u);
}

// A text of many values costs the tree no more than its limit allows.
TEST(TextLocatorTest, ManyValuesBuildNoMoreThanTheLimit) {
  std::string text = "(a = [";
  for (int i = 0; i < 100000; ++i) text += "1,";
  text += "], b = (";
  for (int i = 0; i < 100000; ++i) text += "c = (),";
  text += "))";
  TextLocator locator = TextLocator::Parse(text, 1000);
  ASSERT_FALSE(locator.syntax_error().has_value()) << locator.syntax_error()->message;
  EXPECT_EQ(locator.nodes().size(), 1002u);
  EXPECT_EQ(locator.Find("a")->entries, 100000u);
  EXPECT_EQ(locator.root()->entries, 2u);
}

}  // namespace
}  // namespace capbroker
