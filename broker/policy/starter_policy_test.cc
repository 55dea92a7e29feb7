#include "broker/policy/starter_policy.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "broker/policy/policy.h"
#include "broker/policy/policy_parser.h"
#include "broker/policy/schema_path.h"
#include "gtest/gtest.h"
#include "schemas/policy.capnp.h"
#include "sdk/base/status_matchers.h"

namespace capbroker {
namespace {

TEST(StarterPolicyTest, LoadsWithoutError) {
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(StarterPolicyText(), "starter.cb"));
  EXPECT_EQ(policy.capabilities().size(), 3u);
  EXPECT_EQ(policy.principals().size(), 2u);
  Identity ops{1000, 1000, 1, "/usr/bin/cat", ""};
  EXPECT_OK(policy.Decide(ops, "spool", schema::Access::READ_WRITE).status);
  Identity other{1001, 1001, 1, "", ""};
  EXPECT_OK(policy.Decide(other, "motd", schema::Access::READ).status);
  EXPECT_FALSE(policy.Decide(other, "scratch", schema::Access::READ).status.ok());
}

// Every field an admin can write appears in the starter policy, with an
// explanation on its line, so the starter doubles as the reference.
TEST(StarterPolicyTest, MentionsEveryField) {
  std::string text(StarterPolicyText());
  for (capnp::StructSchema schema :
       {capnp::Schema::from<policy::Policy>(), capnp::Schema::from<policy::Capability>(),
        capnp::Schema::from<policy::FileCapability>(),
        capnp::Schema::from<policy::DirectoryCapability>(),
        capnp::Schema::from<policy::MemoryCapability>(),
        capnp::Schema::from<policy::Principal>(), capnp::Schema::from<policy::Match>(),
        capnp::Schema::from<policy::Service>(),
        capnp::Schema::from<policy::ResourceLimits>(),
        capnp::Schema::from<policy::Sandbox>()}) {
    for (const std::string& field : WritableFieldNames(schema)) {
      EXPECT_NE(text.find(absl::StrCat(field, " =")), std::string::npos)
          << schema.getShortDisplayName().cStr() << "." << field;
    }
  }
  EXPECT_NE(text.find("# "), std::string::npos);
}

// The commented-out service example is valid once uncommented as it says.
TEST(StarterPolicyTest, ServiceExampleLoadsWhenUncommented) {
  std::string text(StarterPolicyText());
  size_t begin = text.find("  #-services\n");
  size_t end = text.find("  #-end\n");
  ASSERT_NE(begin, std::string::npos);
  ASSERT_NE(end, std::string::npos);
  std::string block = text.substr(begin, end - begin);
  block = absl::StrReplaceAll(block, {{"\n  # ", "\n  "}});
  std::string principals_end = "grants = [ \"motd\" ] )\n  ]";
  size_t at = text.find(principals_end);
  ASSERT_NE(at, std::string::npos);
  std::string uncommented = text.substr(0, at + principals_end.size()) + "," +
                            text.substr(at + principals_end.size(), begin - at -
                                        principals_end.size()) +
                            block + text.substr(end);
  ASSERT_OK_AND_ASSIGN(Policy policy, ParsePolicy(uncommented, "starter.cb"));
  ASSERT_EQ(policy.services().size(), 1u);
  const ServiceSpec& scanner = policy.services()[0];
  EXPECT_EQ(scanner.command[0], "/usr/local/lib/capbroker/scanner");
  EXPECT_EQ(scanner.user, 65534u);
  EXPECT_EQ(scanner.limits.pids_max, 64u);
  EXPECT_EQ(scanner.protections.restrict_address_families.size(), 1u);
}

}  // namespace
}  // namespace capbroker
