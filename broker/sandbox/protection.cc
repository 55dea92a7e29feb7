#include "broker/sandbox/protection.h"

#include "absl/strings/str_cat.h"

namespace capbroker::sandbox {

static_assert(static_cast<int>(Protection::kRestrictAddressFamilies) + 1 == kProtectionCount,
              "kProtectionCount counts every Protection");

absl::string_view PolicyName(Protection protection) {
  switch (protection) {
    case Protection::kPrivateUsers: return "privateUsers";
    case Protection::kProtectSystem: return "protectSystem";
    case Protection::kPrivatePids: return "privatePids";
    case Protection::kPrivateIpc: return "privateIpc";
    case Protection::kProtectHostname: return "protectHostname";
    case Protection::kPrivateNetwork: return "privateNetwork";
    case Protection::kNoNewPrivileges: return "noNewPrivileges";
    case Protection::kDropCapabilities: return "dropCapabilities";
    case Protection::kSystemCallFilter: return "systemCallFilter";
    case Protection::kLandlock: return "landlock";
    case Protection::kCgroup: return "cgroup";
    case Protection::kRestrictAddressFamilies: return "restrictAddressFamilies";
  }
  return "unknown";
}

absl::string_view InForceToken(Protection protection) {
  switch (protection) {
    case Protection::kPrivateUsers: return "userns";
    case Protection::kProtectSystem: return "mountns";
    case Protection::kPrivatePids: return "pidns";
    case Protection::kPrivateIpc: return "ipcns";
    case Protection::kProtectHostname: return "utsns";
    case Protection::kPrivateNetwork: return "netns";
    case Protection::kNoNewPrivileges: return "nnp";
    case Protection::kDropCapabilities: return "caps";
    case Protection::kSystemCallFilter: return "seccomp";
    case Protection::kLandlock: return "landlock";
    case Protection::kCgroup: return "cgroup";
    case Protection::kRestrictAddressFamilies: return "";
  }
  return "";
}

std::string RequiredButMessage(Protection protection, absl::string_view reason) {
  return absl::StrCat(PolicyName(protection), " is required but ", reason);
}

std::string MissingEntry(Protection protection, absl::string_view reason) {
  return absl::StrCat(PolicyName(protection), ": ", reason);
}

}  // namespace capbroker::sandbox
