#include "broker/policy/list_sizes.h"

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/policy/diagnostics.h"
#include "broker/policy/policy_validator.h"
#include "broker/policy/service_validator.h"
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
  TextLocator locator = TextLocator::Parse(text);
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

// Only the lists the validators limit are counted, where they limit them.
TEST(ListSizesTest, OtherListsAreLeftToTheSchema) {
  const std::string many = List(kMaxCapabilities + 1);
  for (const std::string& text :
       {absl::StrCat("( other = ", many, " )"),
        absl::StrCat("( principals = [ ( capabilities = ", many, " ) ] )"),
        absl::StrCat("( capabilities = [ ( grants = ", many, " ) ] )"),
        absl::StrCat("( a = ( grants = ", many, " ) )"),
        absl::StrCat("( services = [ [ ( grants = ", many, " ) ] ] )")}) {
    EXPECT_EQ(ErrorsOf(text), "") << text;
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
