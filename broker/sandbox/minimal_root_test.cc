#include "broker/sandbox/minimal_root.h"

#include "gtest/gtest.h"

namespace capbroker::sandbox {
namespace {

TEST(MinimalRootTest, SystemDirectories) {
  EXPECT_TRUE(IsInSystemDirectory("/usr/bin/true"));
  EXPECT_TRUE(IsInSystemDirectory("/bin/sh"));
  EXPECT_TRUE(IsInSystemDirectory("/lib64/ld-linux-x86-64.so.2"));
  EXPECT_TRUE(IsInSystemDirectory("/usr"));
  EXPECT_FALSE(IsInSystemDirectory("/usrx/bin/true"));
  EXPECT_FALSE(IsInSystemDirectory("/libexec/x"));
  EXPECT_FALSE(IsInSystemDirectory("/opt/app/bin/app"));
  EXPECT_FALSE(IsInSystemDirectory("/etc/init.d/x"));
}

TEST(MinimalRootTest, NormalAbsolutePaths) {
  EXPECT_TRUE(IsNormalAbsolutePath("/usr/bin/true"));
  EXPECT_TRUE(IsNormalAbsolutePath("/a"));
  EXPECT_FALSE(IsNormalAbsolutePath(""));
  EXPECT_FALSE(IsNormalAbsolutePath("/"));
  EXPECT_FALSE(IsNormalAbsolutePath("usr/bin/true"));
  EXPECT_FALSE(IsNormalAbsolutePath("/usr//bin"));
  EXPECT_FALSE(IsNormalAbsolutePath("/usr/bin/"));
  EXPECT_FALSE(IsNormalAbsolutePath("/usr/./bin"));
  EXPECT_FALSE(IsNormalAbsolutePath("/usr/../etc/shadow"));
}

}  // namespace
}  // namespace capbroker::sandbox
