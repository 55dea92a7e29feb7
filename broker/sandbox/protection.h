// The names of the sandbox's protections, for messages and reports.
//
// Every message about a protection uses the policy-facing name (the one a
// policy author writes: "privateNetwork"), and LaunchedProcess::in_force uses
// the short token ("netns"). Both live here so that the parent (the launch) and
// the child (which reports what it could not do) spell them alike.
#ifndef CAPBROKER_BROKER_SANDBOX_PROTECTION_H_
#define CAPBROKER_BROKER_SANDBOX_PROTECTION_H_

#include <string>

#include "absl/strings/string_view.h"

namespace capbroker::sandbox {

// One entry a protection, in the order of LaunchedProcess::in_force.
enum class Protection {
  kPrivateUsers,
  kProtectSystem,
  kPrivatePids,
  kPrivateIpc,
  kProtectHostname,
  kPrivateNetwork,
  kNoNewPrivileges,
  kDropCapabilities,
  kSystemCallFilter,
  kLandlock,
  // Not a Requirement of its own: required whenever the limits need it
  // (memoryMax, pidsMax; see ResourceLimits), so never missing.
  kCgroup,
  // Enforced by the seccomp filter; missing when the filter is missing or
  // off.
  kRestrictAddressFamilies,
};

inline constexpr int kProtectionCount = 12;

// "privateNetwork", "landlock", "cgroup", ...
absl::string_view PolicyName(Protection protection);

// "netns", "nnp", "landlock", "cgroup", ... ("" for
// kRestrictAddressFamilies, which has no token of its own). Landlock's token
// gets ":<ABI>" appended by the caller.
absl::string_view InForceToken(Protection protection);

// "<name> is required but <reason>": the message of a failed launch.
std::string RequiredButMessage(Protection protection, absl::string_view reason);

// "<name>: <reason>": an entry of LaunchedProcess::missing.
std::string MissingEntry(Protection protection, absl::string_view reason);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_PROTECTION_H_
