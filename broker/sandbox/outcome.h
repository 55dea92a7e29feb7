// What a launch has decided about each protection: private to the sandbox
// library, shared by StartLaunch (before the clone) and the pending launch
// (the child's reports, the final `in_force` and `missing`).
#ifndef CAPBROKER_BROKER_SANDBOX_OUTCOME_H_
#define CAPBROKER_BROKER_SANDBOX_OUTCOME_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "broker/sandbox/protection.h"
#include "broker/sandbox/settings.h"

namespace capbroker::sandbox {

struct NamespaceProtection {
  Protection protection;
  uint64_t flag;  // CLONE_NEW*
};

// In the order the probes try them: the user namespace first, since the
// others depend on it for a broker that is not root.
extern const NamespaceProtection kNamespaces[6];

// The requirement the spec sets for `protection`.
Requirement RequirementOf(const Protections& p, Protection protection);

class Outcome {
 public:
  explicit Outcome(Protections protections) : protections_(std::move(protections)) {}

  // kOff once a protection was found missing.
  Requirement requirement(Protection p) const;
  bool wanted(Protection p) const { return requirement(p) != Requirement::kOff; }

  // A protection found unavailable: the launch's error when it is required,
  // else recorded as missing.
  absl::Status Unavailable(Protection p, absl::string_view reason);
  // Records an entry of `missing`; `tag` (a Protection) is then off, unless
  // it is out of range.
  void MarkMissing(int tag, std::string entry);

  // Entries for what Landlock, when in force at `abi`, leaves uncovered that
  // a newer ABI covers (landlock::UncoveredAt): the entry only, Landlock
  // stays in force. `deny_tcp`: the ruleset is to deny TCP (the service's
  // families have neither inet nor inet6); a gap there counts only while the
  // seccomp filter, which then refuses the sockets, is not in force; the
  // truncate gap only while the minimal root (protectSystem) is not. Called
  // once the child's report is in, when both layers' fates are known.
  void MarkLandlockGaps(int abi, bool deny_tcp);

  // The `in_force` tokens, for the namespaces the child was created in.
  std::vector<std::string> InForce(uint64_t namespaces, int landlock_abi, bool cgroup) const;
  std::vector<std::string> TakeEntries() { return std::move(entries_); }

 private:
  Protections protections_;
  bool missing_[kProtectionCount] = {};
  std::vector<std::string> entries_;
};

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_OUTCOME_H_
