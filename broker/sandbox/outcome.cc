#include "broker/sandbox/outcome.h"

#include <sched.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/sandbox/landlock.h"

namespace capbroker::sandbox {

const NamespaceProtection kNamespaces[6] = {
    {Protection::kPrivateUsers, CLONE_NEWUSER},
    {Protection::kProtectSystem, CLONE_NEWNS},
    {Protection::kPrivatePids, CLONE_NEWPID},
    {Protection::kPrivateIpc, CLONE_NEWIPC},
    {Protection::kProtectHostname, CLONE_NEWUTS},
    {Protection::kPrivateNetwork, CLONE_NEWNET},
};

Requirement RequirementOf(const Protections& p, Protection protection) {
  switch (protection) {
    case Protection::kPrivateUsers: return p.private_users;
    case Protection::kProtectSystem: return p.protect_system;
    case Protection::kPrivatePids: return p.private_pids;
    case Protection::kPrivateIpc: return p.private_ipc;
    case Protection::kProtectHostname: return p.protect_hostname;
    case Protection::kPrivateNetwork: return p.private_network;
    case Protection::kNoNewPrivileges: return p.no_new_privileges;
    case Protection::kDropCapabilities: return p.drop_capabilities;
    case Protection::kSystemCallFilter: return p.system_call_filter;
    case Protection::kLandlock: return p.landlock;
    // The limits a policy sets are applied or the service does not start
    // (MakeCgroup): never listed as missing.
    case Protection::kCgroup: return Requirement::kRequired;
    case Protection::kRestrictAddressFamilies:
      return Requirement::kBestEffort;
  }
  return Requirement::kRequired;
}

Requirement Outcome::requirement(Protection p) const {
  return missing_[static_cast<int>(p)] ? Requirement::kOff : RequirementOf(protections_, p);
}

absl::Status Outcome::Unavailable(Protection p, absl::string_view reason) {
  if (RequirementOf(protections_, p) == Requirement::kRequired) {
    return absl::FailedPreconditionError(RequiredButMessage(p, reason));
  }
  MarkMissing(static_cast<int>(p), MissingEntry(p, reason));
  return absl::OkStatus();
}

void Outcome::MarkMissing(int tag, std::string entry) {
  if (tag >= 0 && tag < kProtectionCount) missing_[tag] = true;
  entries_.push_back(std::move(entry));
}

void Outcome::MarkLandlockGaps(int abi, bool deny_tcp) {
  if (!wanted(Protection::kLandlock)) return;
  const bool tcp_wanted = deny_tcp && !wanted(Protection::kSystemCallFilter);
  const bool host_tree = !wanted(Protection::kProtectSystem);
  for (const std::string& gap : landlock::UncoveredAt(abi, tcp_wanted, host_tree)) {
    entries_.push_back(MissingEntry(Protection::kLandlock, gap));
  }
}

std::vector<std::string> Outcome::InForce(uint64_t namespaces, int landlock_abi,
                                          bool cgroup) const {
  std::vector<std::string> tokens;
  for (const NamespaceProtection& ns : kNamespaces) {
    if ((namespaces & ns.flag) && wanted(ns.protection)) {
      tokens.emplace_back(InForceToken(ns.protection));
    }
  }
  for (Protection p : {Protection::kNoNewPrivileges, Protection::kDropCapabilities,
                       Protection::kSystemCallFilter}) {
    if (wanted(p)) tokens.emplace_back(InForceToken(p));
  }
  if (wanted(Protection::kLandlock)) {
    tokens.push_back(absl::StrCat(InForceToken(Protection::kLandlock), ":", landlock_abi));
  }
  if (cgroup) tokens.emplace_back(InForceToken(Protection::kCgroup));
  return tokens;
}

}  // namespace capbroker::sandbox
