#include "broker/policy/list_sizes.h"

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/policy/diagnostics.h"
#include "broker/policy/text_locator.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

// "[ "", "", ... ]" with `size` entries.
std::string List(size_t size) {
  return absl::StrCat("[", absl::StrJoin(std::vector<std::string>(size, "\"\""), ","), "]");
}

// What CheckListSizes says of `text` ("" when nothing).
std::string ErrorsOf(absl::string_view text) {
  TextLocator locator = TextLocator::Parse(text, kMaxPolicyValues);
  EXPECT_FALSE(locator.syntax_error().has_value()) << text;
  Diagnostics diagnostics("p.cb", locator);
  CheckListSizes(locator, diagnostics);
  return std::string(diagnostics.ToStatus().message());
}

// "p.cb:1:COL" of the first `marker` in one-line `text`.
std::string At(absl::string_view text, absl::string_view marker) {
  return absl::StrCat("p.cb:1:", text.find(marker) + 1);
}

TEST(ListSizesTest, ARootListOverItsLimitIsRefusedAtTheList) {
  struct Case {
    absl::string_view field;
    size_t limit;
  };
  for (const Case& c : {Case{"capabilities", kMaxCapabilities},
                        Case{"principals", kMaxPrincipals}, Case{"services", kMaxServices}}) {
    std::string text = absl::StrCat("( ", c.field, " = ", List(c.limit), " )");
    EXPECT_EQ(ErrorsOf(text), "") << c.field;
    text = absl::StrCat("( ", c.field, " = ", List(c.limit + 1), " )");
    EXPECT_EQ(ErrorsOf(text), absl::StrCat(At(text, "["), ": too many ", c.field, ": ",
                                           c.limit + 1, "; the limit is ", c.limit));
  }
}

TEST(ListSizesTest, AListOfAnEntryOverItsLimitNamesTheEntry) {
  struct Case {
    absl::string_view owner;  // a list of the root
    absl::string_view what;   // one of its entries
    absl::string_view field;
    size_t limit;
    absl::string_view entries;
  };
  for (const Case& c :
       {Case{"principals", "principal", "grants", kMaxGrantsPerPrincipal, "grants"},
        Case{"services", "service", "grants", kMaxServiceGrants, "grants"},
        Case{"services", "service", "connect", kMaxConnectEntries, "connect names"},
        Case{"services", "service", "command", kMaxServiceArguments, "command arguments"},
        Case{"services", "service", "environment", kMaxServiceEnvironment,
             "environment entries"}}) {
    auto text_of = [&](size_t size) {
      return absl::StrCat("( ", c.owner, " = [ ( name = \"x\" ), ( name = \"n\", ", c.field,
                          " = ", List(size), " ) ] )");
    };
    EXPECT_EQ(ErrorsOf(text_of(c.limit)), "") << c.owner << "." << c.field;
    std::string text = text_of(c.limit + 1);
    EXPECT_EQ(ErrorsOf(text), absl::StrCat(At(text, "[\""), ": ", c.what, " 'n' has ",
                                           c.limit + 1, " ", c.entries, "; the limit is ",
                                           c.limit));
  }
}

// The name is shown only when it is a valid one, written plainly; else the
// entry's place.
TEST(ListSizesTest, AnEntryWithoutAPlainValidNameIsNamedByItsPlace) {
  const std::string grants = List(kMaxGrantsPerPrincipal + 1);
  for (absl::string_view name :
       {R"(name = "a\x1bb")", R"(name = "p" "q")", R"(name = "-p")", "name = 1", "other = 1"}) {
    std::string text = absl::StrCat("( principals = [ (), ( ", name, ", grants = ", grants,
                                    " ) ] )");
    EXPECT_EQ(ErrorsOf(text), absl::StrCat(At(text, "[\""), ": principals[1] has 1025 grants; "
                                                            "the limit is 1024"))
        << name;
  }
}

// A service's restrictAddressFamilies holds at most one of each family.
TEST(ListSizesTest, AddressFamiliesAreAtMostTheFamiliesThereAre) {
  auto text_of = [](absl::string_view families) {
    return absl::StrCat("( services = [ ( name = \"n\", sandbox = ( restrictAddressFamilies = [",
                        families, "] ) ) ] )");
  };
  EXPECT_EQ(ErrorsOf(text_of("unix, inet, inet6, netlink")), "");
  std::string text = text_of("unix, inet, inet6, netlink, unix");
  EXPECT_EQ(ErrorsOf(text),
            absl::StrCat(At(text, "[unix"), ": service 'n' has 5 address families in "
                                            "restrictAddressFamilies; the limit is 4, the number "
                                            "of address families there are: list each once"));
  // Anywhere else, the field is not the schema's: only the general limit.
  EXPECT_EQ(ErrorsOf("( sandbox = ( restrictAddressFamilies = [1, 2, 3, 4, 5] ) )"), "");
}

// Any other list (under a field the schema does not have, in a list, or
// where the schema has no such field) is held to the largest limit of all:
// TextCodec would build it whole before refusing it.
TEST(ListSizesTest, AnyOtherListHasTheLargestLimit) {
  struct Case {
    absl::string_view text;   // LIST stands for the list
    absl::string_view named;  // the list, in the message
  };
  for (const Case& c : {Case{"( other = LIST )", "'other'"},
                        Case{"( principals = [ ( capabilities = LIST ) ] )", "'capabilities'"},
                        Case{"( capabilities = [ ( grants = LIST ) ] )", "'grants'"},
                        Case{"( a = ( grants = LIST ) )", "'grants'"},
                        Case{"( services = [ [ ( grants = LIST ) ] ] )", "'grants'"},
                        Case{"( other = [ ( principals = LIST ) ] )", "'principals'"},
                        Case{"( principals = [ ( grants = [ LIST ] ) ] )", "a list"}}) {
    auto text_of = [&](size_t size) {
      std::string text(c.text);
      text.replace(text.find("LIST"), 4, List(size));
      return text;
    };
    EXPECT_EQ(ErrorsOf(text_of(kMaxAnyListEntries)), "") << c.text;
    std::string text = text_of(kMaxAnyListEntries + 1);
    EXPECT_EQ(ErrorsOf(text), absl::StrCat(At(text, "[\"\""), ": ", c.named,
                                           " has 4097 entries; no list in a policy may have "
                                           "more than 4096"))
        << c.text;
  }
}

// A text written piece by piece that counts its values (fields and list
// entries) and keeps the offset of the one past `total`.
class CountedText {
 public:
  explicit CountedText(size_t total) : total_(total) {}
  void Append(absl::string_view text) { absl::StrAppend(&text_, text); }
  // `text` starts with a value: a field's name, or a list's entry.
  void Value(absl::string_view text) {
    if (++values_ == total_ + 1) past_ = text_.size();
    absl::StrAppend(&text_, text);
  }
  bool past() const { return values_ > total_; }
  // "p.cb:1:COL" of the value past `total`.
  std::string At() const { return absl::StrCat("p.cb:1:", past_ + 1); }
  const std::string& text() const { return text_; }

 private:
  size_t total_;
  size_t values_ = 0;
  size_t past_ = 0;
  std::string text_;
};

std::string PastTheTotal() {
  return absl::StrCat(": too many values: this one is past the ", kMaxPolicyValues,
                      " fields and list entries that a policy may hold together");
}

// Each list within its limit, all the values together past
// kMaxPolicyValues: refused once, at the value, in the text's order, that
// passes it (here inside a principal's grants, after the principals
// before it, each principal, its `grants` field and each grant a value).
TEST(ListSizesTest, AllTheValuesTogetherHaveALimit) {
  CountedText text(kMaxPolicyValues);
  std::string within;  // the same text without its last principal
  text.Append("( ");
  text.Value("principals = [ ");
  for (size_t p = 0; !text.past(); ++p) {
    within = absl::StrCat(text.text(), " ] )");
    if (p > 0) text.Append(", ");
    text.Value("( ");
    text.Value("grants = [ ");
    for (size_t g = 0; g < kMaxGrantsPerPrincipal; ++g) {
      if (g > 0) text.Append(", ");
      text.Value("\"\"");
    }
    text.Append(" ] )");
  }
  text.Append(" ] )");
  EXPECT_EQ(ErrorsOf(text.text()), text.At() + PastTheTotal());
  EXPECT_EQ(ErrorsOf(within), "");
}

// Wherever the values are: under fields the schema does not have, inside
// a list.
TEST(ListSizesTest, EveryListCountsTowardsTheTotal) {
  CountedText text(kMaxPolicyValues);
  text.Append("( ");
  for (size_t f = 0; !text.past(); ++f) {
    text.Value(absl::StrCat("f", f, " = [ "));
    text.Value("[ ");
    for (size_t e = 0; e < kMaxAnyListEntries; ++e) {
      if (e > 0) text.Append(", ");
      text.Value("1");
    }
    text.Append(" ] ], ");
  }
  text.Append("last = 1 )");
  EXPECT_EQ(ErrorsOf(text.text()), text.At() + PastTheTotal());
}

// A struct's fields count as list entries do: TextCodec builds them all
// before it refuses a field the schema does not have or one given twice,
// and each costs it more than an entry. 100,000 fields in the root, in a
// struct below it, or each an empty struct: refused at the name of the
// field past the total; exactly the total is not.
TEST(ListSizesTest, EveryFieldCountsTowardsTheTotal) {
  struct Case {
    absl::string_view outer;  // the field holding the fields, if any
    absl::string_view field;  // each one
  };
  for (const Case& c : {Case{"", "zz = 0"}, Case{"zz = ( ", "a = 0"}, Case{"", "zz = ()"}}) {
    const size_t outer = c.outer.empty() ? 0 : 1;  // values before the fields
    auto text_of = [&](size_t fields, CountedText& text) {
      text.Append("( ");
      if (outer > 0) text.Value(c.outer);
      for (size_t f = 0; f < fields; ++f) {
        if (f > 0) text.Append(", ");
        text.Value(c.field);
      }
      text.Append(outer > 0 ? " ) )" : " )");
    };
    CountedText many(kMaxPolicyValues);
    text_of(100000, many);
    ASSERT_TRUE(many.past());
    EXPECT_EQ(ErrorsOf(many.text()), many.At() + PastTheTotal()) << c.field;
    CountedText exactly(kMaxPolicyValues);
    text_of(kMaxPolicyValues - outer, exactly);
    EXPECT_EQ(ErrorsOf(exactly.text()), "") << c.field;
  }
}

// The tree stops at the value past the total (TextLocator::Parse), but a
// list still open there is told with all its entries, and lists after it
// are not built, so not checked: the total is refused first.
TEST(ListSizesTest, AListOpenAtTheValuePastTheTotalIsToldWhole) {
  constexpr size_t kEntries = kMaxPolicyValues + 10000;
  CountedText text(kMaxPolicyValues);
  text.Append("( ");
  text.Value("other = [");
  for (size_t e = 0; e < kEntries; ++e) {
    if (e > 0) text.Append(",");
    text.Value("1");
  }
  text.Append("], ");
  text.Value(absl::StrCat("after = ", List(kMaxAnyListEntries + 1), " )"));
  TextLocator locator = TextLocator::Parse(text.text(), kMaxPolicyValues);
  EXPECT_EQ(locator.nodes().size(), kMaxPolicyValues + 2);
  EXPECT_EQ(ErrorsOf(text.text()),
            absl::StrCat(At(text.text(), "["), ": 'other' has ", kEntries,
                         " entries; no list in a policy may have more than 4096\n",
                         text.At(), PastTheTotal()));
}

// A name after the value past the total is not in the tree: the entry open
// there is named by its place (list_sizes.h says why).
TEST(ListSizesTest, AnEntryOpenAtTheValuePastTheTotalIsNamedByItsPlace) {
  const std::string text = absl::StrCat("( services = [ ( command = ", List(70000),
                                        ", name = \"svc\" ) ] )");
  const std::string errors = ErrorsOf(text);
  const std::string first = absl::StrCat(At(text, "[\"\""),
                                         ": services[0] has 70000 command arguments; the limit is ",
                                         kMaxServiceArguments, "\n");
  EXPECT_EQ(errors.substr(0, first.size()), first) << errors;
}

// CheckListSizes reads the value past kMaxPolicyValues from the tree, so a
// tree built to another limit is refused, never checked in part.
TEST(ListSizesTest, ATreeBuiltToAnotherLimitIsRefused) {
  for (size_t max_values : {kAllTextValues, kMaxPolicyValues - 1}) {
    TextLocator locator = TextLocator::Parse("( a = 1 )", max_values);
    Diagnostics diagnostics("p.cb", locator);
    CheckListSizes(locator, diagnostics);
    EXPECT_THAT(diagnostics.ToStatus(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr(absl::StrCat(
                             "internal error: the policy was parsed with a limit of ",
                             max_values, " values, not ", kMaxPolicyValues))));
  }
}

TEST(ListSizesTest, EveryListOverItsLimitIsAnError) {
  const std::string grants = List(kMaxGrantsPerPrincipal + 1);
  std::string text = absl::StrCat("( principals = [ ( name = \"a\", grants = ", grants,
                                  " ), ( name = \"b\", grants = ", grants, " ) ] )");
  EXPECT_EQ(ErrorsOf(text),
            absl::StrCat(At(text, "[\""), ": principal 'a' has 1025 grants; the limit is 1024\n",
                         "p.cb:1:", text.rfind("[\"") + 1,
                         ": principal 'b' has 1025 grants; the limit is 1024"));
}

}  // namespace
}  // namespace capbroker
