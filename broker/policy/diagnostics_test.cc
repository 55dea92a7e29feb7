#include "broker/policy/diagnostics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kText = "(a = 1,\n b = (c = 2))";

TEST(DiagnosticsTest, EmptyIsOk) {
  TextLocator locator = TextLocator::Parse(kText);
  Diagnostics diagnostics("p.cb", locator);
  EXPECT_OK(diagnostics.ToStatus());
  EXPECT_EQ(diagnostics.count(), 0u);
}

TEST(DiagnosticsTest, FormatsFileLineColumnAndJoinsLinesInTextOrder) {
  TextLocator locator = TextLocator::Parse(kText);
  Diagnostics diagnostics("p.cb", locator);
  diagnostics.AddAt(5, "first");
  diagnostics.AddAtPath("b.c", "second");
  diagnostics.AddAtPath("b.d", "missing field points at its struct");
  EXPECT_THAT(diagnostics.ToStatus(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "p.cb:1:6: first\n"
                       "p.cb:2:6: missing field points at its struct\n"
                       "p.cb:2:11: second"));
}

// A file's name in another language stays as it is, in the FILE:LINE:COL
// form editors jump to; a control byte in it is escaped.
TEST(DiagnosticsTest, AUtf8FileNameIsKeptAndControlBytesEscaped) {
  TextLocator locator = TextLocator::Parse(kText);
  Diagnostics spanish("pol\xc3\xadtica.capnp", locator);
  spanish.AddAt(5, "first");
  EXPECT_THAT(spanish.ToStatus(), StatusIs(absl::StatusCode::kInvalidArgument,
                                           "pol\xc3\xadtica.capnp:1:6: first"));
  Diagnostics odd("a\x1b[2J\xc2\x9b.capnp", locator);
  odd.AddAt(5, "first");
  EXPECT_THAT(odd.ToStatus(), StatusIs(absl::StatusCode::kInvalidArgument,
                                       "a\\x1b[2J\\xc2\\x9b.capnp:1:6: first"));
}

TEST(DiagnosticsTest, CapsTheNumberOfLines) {
  TextLocator locator = TextLocator::Parse(kText);
  Diagnostics diagnostics("p.cb", locator);
  for (size_t i = 0; i < kMaxReportedErrors + 5; ++i) {
    EXPECT_EQ(diagnostics.full(), i >= kMaxReportedErrors);
    diagnostics.AddAt(0, "error " + std::to_string(i));
  }
  absl::Status status = diagnostics.ToStatus();
  EXPECT_EQ(diagnostics.count(), kMaxReportedErrors + 5);
  EXPECT_THAT(std::string(status.message()), HasSubstr("error 19"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("error 20")));
  EXPECT_THAT(std::string(status.message()), EndsWith("p.cb: 5 more errors not shown"));
}

// Locating an error walks its path, which costs a scan of each struct on
// it: done only for the errors shown, however many more there are.
TEST(DiagnosticsTest, OnlyTheErrorsShownAreLocated) {
  TextLocator locator = TextLocator::Parse(kText);
  Diagnostics diagnostics("p.cb", locator);
  for (size_t i = 0; i < kMaxReportedErrors + 5; ++i) diagnostics.AddAtPath("b.c", "error");
  EXPECT_EQ(diagnostics.count(), kMaxReportedErrors + 5);
  EXPECT_EQ(locator.paths_walked(), kMaxReportedErrors);
  EXPECT_THAT(std::string(diagnostics.ToStatus().message()),
              EndsWith("p.cb: 5 more errors not shown"));
}

}  // namespace
}  // namespace capbroker
