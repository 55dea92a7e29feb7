#include "sdk/service/serve.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
  std::vector<ServiceFlag> flags_ = {{"max-bytes", "BYTES", [this](absl::string_view value) {
                                        return absl::SimpleAtoi(value, &bytes_)
                                                   ? absl::OkStatus()
                                                   : absl::InvalidArgumentError("not a number");
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
  EXPECT_THAT(Parse({"--max-bytes=lots"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--max-bytes: not a number")));
}

}  // namespace
}  // namespace capbroker
