#include "broker/policy/schema_path.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schemas/policy.capnp.h"

namespace capbroker {
namespace {

using ::testing::ElementsAre;

capnp::StructSchema Root() { return capnp::Schema::from<policy::Policy>(); }

TEST(SchemaPathTest, TypeAtPathFollowsFieldsListsAndUnionMembers) {
  std::optional<capnp::Type> access = TypeAtPath(Root(), "capabilities[1].file.access");
  ASSERT_TRUE(access.has_value());
  ASSERT_TRUE(access->isEnum());
  EXPECT_EQ(TypeName(*access), "Access");

  std::optional<capnp::Type> grants = TypeAtPath(Root(), "principals[0].grants");
  ASSERT_TRUE(grants.has_value());
  EXPECT_EQ(TypeName(*grants), "List(Text)");
  EXPECT_EQ(TypeName(*TypeAtPath(Root(), "principals[0].grants[3]")), "Text");
  EXPECT_EQ(TypeName(*TypeAtPath(Root(), "capabilities[0].memory")), "MemoryCapability");
  EXPECT_EQ(TypeName(*TypeAtPath(Root(), "capabilities[0].memory.size")), "UInt64");
  EXPECT_EQ(TypeName(*TypeAtPath(Root(), "")), "Policy");
}

TEST(SchemaPathTest, TypeAtPathRejectsPathsOutsideTheSchema) {
  EXPECT_FALSE(TypeAtPath(Root(), "capabilities[0].file.pth").has_value());
  EXPECT_FALSE(TypeAtPath(Root(), "capabilities.name").has_value());  // list, not struct
  EXPECT_FALSE(TypeAtPath(Root(), "principals[0].name[0]").has_value());  // Text, not list
  EXPECT_FALSE(TypeAtPath(Root(), "a..b").has_value());
}

TEST(SchemaPathTest, WritableFieldNamesLeaveOutVoidUnionMembers) {
  EXPECT_THAT(WritableFieldNames(capnp::Schema::from<policy::Capability>()),
              ElementsAre("name", "file", "directory", "memory"));
  EXPECT_THAT(WritableFieldNames(capnp::Schema::from<policy::FileCapability>()),
              ElementsAre("path", "access", "create", "mode", "truncate", "followSymlinks"));
}

TEST(SchemaPathTest, EnumerantNames) {
  capnp::EnumSchema access = capnp::Schema::from<schema::Access>();
  EXPECT_THAT(EnumerantNames(access),
              ElementsAre("unspecified", "read", "write", "readWrite", "append"));
  EXPECT_THAT(ChoosableEnumerantNames(access),
              ElementsAre("read", "write", "readWrite", "append"));
}

TEST(SchemaPathTest, FindField) {
  EXPECT_TRUE(FindField(capnp::Schema::from<policy::Match>(), "anyUser").has_value());
  EXPECT_FALSE(FindField(capnp::Schema::from<policy::Match>(), "anyuser").has_value());
}

}  // namespace
}  // namespace capbroker
