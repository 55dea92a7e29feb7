#include "sdk/base/decimal.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

TEST(DecimalTest, DigitsAloneAreANumber) {
  EXPECT_EQ(ParseDecimal("0"), 0u);
  EXPECT_EQ(ParseDecimal("7"), 7u);
  EXPECT_EQ(ParseDecimal("1048576"), 1048576u);
  EXPECT_EQ(ParseDecimal("18446744073709551615"), kMax);
}

// Each of these SimpleAtoi or strtoul takes (or takes for some types).
TEST(DecimalTest, EveryOtherFormIsRefused) {
  for (absl::string_view text :
       {"", " 5", "5 ", "\t5", "5\n", "+5", "-5", "-0", "+0", "007", "00", "0x10", "0X10",
        "1e3", "5.0", "1_000", "1,000", "\xd9\xa5",  // ARABIC-INDIC DIGIT FIVE
        "5x"}) {
    EXPECT_EQ(ParseDecimal(text), std::nullopt) << "'" << text << "'";
  }
  EXPECT_EQ(ParseDecimal(absl::string_view("5\0", 2)), std::nullopt);
}

TEST(DecimalTest, ANumberPast64BitsIsRefusedNotWrapped) {
  EXPECT_EQ(ParseDecimal("18446744073709551616"), std::nullopt);
  EXPECT_EQ(ParseDecimal("99999999999999999999"), std::nullopt);
  EXPECT_EQ(ParseDecimal(std::string(100, '9')), std::nullopt);
}

TEST(DecimalTest, TheRangeIsChecked) {
  EXPECT_EQ(ParseDecimal("--n", "1", 1, 5).value_or(0), 1u);
  EXPECT_EQ(ParseDecimal("--n", "5", 1, 5).value_or(0), 5u);
  EXPECT_THAT(ParseDecimal("--n", "0", 1, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--n wants a decimal number from 1 to 5, not '0'"));
  EXPECT_THAT(ParseDecimal("--n", "6", 1, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--n wants a decimal number from 1 to 5, not '6'"));
  EXPECT_THAT(ParseDecimal("--n", "18446744073709551616", 0, kMax),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("--n wants a decimal number from 0 to ", kMax,
                                    ", not '18446744073709551616'")));
  EXPECT_THAT(ParseDecimal("LISTEN_FDS", "2", 1, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, "LISTEN_FDS wants 1, not '2'"));
}

TEST(DecimalTest, ARefusalNamesTheFlagAndShowsTheValueEscaped) {
  EXPECT_THAT(ParseDecimal("LISTEN_FDS", " 1\n\x1b[2J", 1, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "LISTEN_FDS wants 1 (digits only, no leading 0), "
                       "not ' 1\\x0a\\x1b[2J'"));
  EXPECT_THAT(ParseDecimal("--ready-fd", "+3", 0, 10),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--ready-fd wants a decimal number from 0 to 10 (digits only, no "
                       "leading 0), not '+3'"));
  // Bounded: a long value is cut in its middle (sdk/base/shown_text.h).
  absl::StatusOr<uint64_t> parsed = ParseDecimal("--n", std::string(100000, 'x'), 0, 1);
  EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes left out")));
  EXPECT_LT(parsed.status().message().size(), 400u);
}

}  // namespace
}  // namespace capbroker
