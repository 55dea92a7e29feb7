#include "sdk/service/serve.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/decimal.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;

class ServeArgumentsTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::string> Parse(const std::vector<std::string>& args) {
    return ParseServeArguments(args, "data", flags_);
  }

  uint64_t bytes_ = 7;
  std::vector<ServiceFlag> flags_ = {
      {"max-bytes", "BYTES", [this](absl::string_view value) -> absl::Status {
         CB_ASSIGN_OR_RETURN(bytes_, ParseDecimal("--max-bytes", value, 1, 1 << 20));
         return absl::OkStatus();
       }}};
};

TEST_F(ServeArgumentsTest, TheGrantAndTheServicesFlags) {
  ASSERT_OK_AND_ASSIGN(std::string grant, Parse({}));
  EXPECT_EQ(grant, "data");
  EXPECT_EQ(bytes_, 7u);
  ASSERT_OK_AND_ASSIGN(grant, Parse({"--max-bytes=4096", "--grant=kv-data"}));
  EXPECT_EQ(grant, "kv-data");
  EXPECT_EQ(bytes_, 4096u);
}

TEST_F(ServeArgumentsTest, AnythingElseIsAUsageError) {
  for (std::vector<std::string> args :
       std::vector<std::vector<std::string>>{{"--grant"},
                                             {"--grant="},
                                             {"grant=x"},
                                             {"--other=1"},
                                             {"--grant=a", "--grant=b"},
                                             {"--max-bytes=1", "--max-bytes=2"}}) {
    EXPECT_THAT(Parse(args), StatusIs(absl::StatusCode::kInvalidArgument)) << args[0];
  }
  // The flag's own refusal, as it says it: naming the flag; the value is
  // left as it was.
  bytes_ = 7;
  EXPECT_THAT(Parse({"--max-bytes=lots"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--max-bytes wants a decimal number from 1 to 1048576 (digits only, no "
                       "leading 0), not 'lots'"));
  EXPECT_THAT(Parse({"--max-bytes=+5"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not '+5'")));
  EXPECT_EQ(bytes_, 7u);
}

// An argument may hold anything (a newline that would forge a line of the
// service's stderr, which the broker logs; an escape sequence): it is shown
// escaped, as ParseDecimal shows a value.
TEST_F(ServeArgumentsTest, ArgumentsAreShownEscaped) {
  EXPECT_THAT(Parse({"bad\nforged line"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "unknown argument 'bad\\x0aforged line'"));
  EXPECT_THAT(Parse({"--x\x1b[31m=1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown argument '--x\\x1b[31m=1'"));
  EXPECT_THAT(Parse({std::string(100000, 'a')}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bytes left out")));
}

}  // namespace
}  // namespace capbroker
