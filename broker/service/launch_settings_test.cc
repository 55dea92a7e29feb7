#include "broker/service/launch_settings.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capbroker::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

CapabilitySpec File(const std::string& name, const std::string& path) {
  CapabilitySpec capability;
  capability.name = name;
  capability.path = path;
  capability.access = schema::Access::READ;
  return capability;
}

ServiceSpec Svc() {
  ServiceSpec spec;
  spec.name = "svc";
  spec.command = {"/bin/sleep", "1000"};
  return spec;
}

// The ids a service runs as when its spec leaves them unset, as the host's
// ServiceIdentity gives them (nobody on a root broker).
constexpr uint32_t kDefaultId = 65534;

std::vector<std::string> Changed(const Policy& before, const ServiceSpec& a,
                                 const Policy& after, const ServiceSpec& b,
                                 InstancePhase phase = InstancePhase::kRunning) {
  std::vector<CapabilitySpec> grants_a = StartGrants(before, a);
  std::vector<CapabilitySpec> grants_b = StartGrants(after, b);
  return ChangedLaunchSettings(
      {a, grants_a, a.user.value_or(kDefaultId), a.group.value_or(kDefaultId)},
      {b, grants_b, b.user.value_or(kDefaultId), b.group.value_or(kDefaultId)}, phase);
}

TEST(LaunchSettingsTest, WhatAppliesAsTheServiceRunsIsNoChange) {
  Policy policy("p", {File("motd", "/etc/motd")}, {});
  ServiceSpec a = Svc();
  a.grants = {0};
  ServiceSpec b = a;
  b.connect = {"me"};
  b.accepts_fds = true;
  b.readiness = Readiness::kExec;
  b.activation = Activation::kAtStart;
  b.restart = RestartMode::kAlways;
  b.restart_limit = 1;
  b.restart_delay_ms = 7;
  EXPECT_THAT(Changed(policy, a, policy, b), IsEmpty());
}

TEST(LaunchSettingsTest, NamesEachChangedSettingInOrder) {
  Policy policy("p", {}, {});
  ServiceSpec a = Svc();
  ServiceSpec b = a;
  b.command = {"/bin/sleep", "2000"};
  b.environment = {"A=1"};
  b.user = 1000;
  b.group = 1000;
  b.protections.landlock = sandbox::Requirement::kBestEffort;
  b.limits.open_files = 64;
  b.start_timeout_ms = 5;
  EXPECT_THAT(Changed(policy, a, policy, b, InstancePhase::kStarting),
              ElementsAre("command", "environment", "user", "group", "sandbox", "limits",
                          "startTimeoutMs"));
  ServiceSpec families = a;
  families.protections.restrict_address_families.push_back(sandbox::AddressFamily::kInet);
  EXPECT_THAT(Changed(policy, a, policy, families), ElementsAre("sandbox"));
}

// startTimeoutMs bounds a start under way: a running service just takes
// the new value.
TEST(LaunchSettingsTest, TheStartTimeoutIsAChangeOnlyWhileTheServiceStarts) {
  Policy policy("p", {}, {});
  ServiceSpec a = Svc();
  ServiceSpec b = a;
  b.start_timeout_ms = a.start_timeout_ms + 1;
  EXPECT_THAT(Changed(policy, a, policy, b, InstancePhase::kStarting),
              ElementsAre("startTimeoutMs"));
  EXPECT_THAT(Changed(policy, a, policy, b, InstancePhase::kRunning), IsEmpty());
}

// User and group are compared as the ids the service runs as: the default
// written out is no change.
TEST(LaunchSettingsTest, UserAndGroupAreComparedAsTheIdsTheServiceRunsAs) {
  Policy policy("p", {}, {});
  ServiceSpec a = Svc();
  ServiceSpec b = a;
  b.user = kDefaultId;
  b.group = kDefaultId;
  EXPECT_THAT(Changed(policy, a, policy, b), IsEmpty());
  b.group = 1000;
  EXPECT_THAT(Changed(policy, a, policy, b), ElementsAre("group"));
}

// Grants are compared as the capabilities they name: a reload may renumber
// them (no change), or keep the name and change what it opens (a change).
TEST(LaunchSettingsTest, GrantsAreComparedByWhatTheyName) {
  Policy before("p", {File("motd", "/etc/motd"), File("other", "/etc/other")}, {});
  Policy renumbered("p", {File("other", "/etc/other"), File("motd", "/etc/motd")}, {});
  Policy moved("p", {File("motd", "/etc/shadow"), File("other", "/etc/other")}, {});
  ServiceSpec a = Svc();
  a.grants = {0};
  ServiceSpec b = a;
  b.grants = {1};
  EXPECT_THAT(Changed(before, a, renumbered, b), IsEmpty());
  EXPECT_THAT(Changed(before, a, moved, a), ElementsAre("grants"));
  ServiceSpec none = a;
  none.grants.clear();
  EXPECT_THAT(Changed(before, a, before, none), ElementsAre("grants"));
  ServiceSpec wider = a;
  std::vector<CapabilitySpec> capabilities = before.capabilities();
  capabilities[0].access = schema::Access::READ_WRITE;
  EXPECT_THAT(Changed(before, a, Policy("p", capabilities, {}), wider), ElementsAre("grants"));
}

}  // namespace
}  // namespace capbroker::service
