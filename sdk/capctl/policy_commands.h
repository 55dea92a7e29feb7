// The `capctl policy` commands: check a policy file as the daemon would load
// it, and print the starter policy.
//
// Kept apart from capctl.cc because broker/policy/policy.h and
// sdk/client/capability.h both declare capbroker::AccessName (returning
// std::string and const char* respectively), so no translation unit can
// include both. This header includes neither.
#ifndef CAPBROKER_SDK_CAPCTL_POLICY_COMMANDS_H_
#define CAPBROKER_SDK_CAPCTL_POLICY_COMMANDS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker {

struct PolicySummary {
  size_t capabilities = 0;
  size_t principals = 0;
  size_t services = 0;
  // What the check could not judge, one line each (no trailing newline):
  // for each service, its limits above capctl's own hard limits (capbrokerd
  // refuses them if above the broker's own too), then whether its memoryMax or pidsMax a broker applies only when it runs
  // with --cgroup DIR, which capctl cannot know; then the capabilities
  // whose paths lie on a FUSE or network file system of this mount
  // namespace, which stall the broker while it does not answer
  // (RemotePathNotes); then the principals whose exe is a script, which
  // never matches (ScriptExeNotes); both from LoadNotes.
  std::vector<std::string> notes;
};

// Loads `path` with LoadPolicyFile, so the file is checked as capbrokerd
// checks it (owner, mode, no symlink, size), not only its text; the owner
// as for a broker running as this process's euid. What depends on the
// broker's flags (--cgroup) or its hard limits is not checked but noted. Errors are
// LoadPolicyFile's; kInvalidArgument messages are "FILE:LINE:COL: message"
// lines.
absl::StatusOr<PolicySummary> CheckPolicyFile(absl::string_view path);

// The text `capctl policy init` prints.
absl::string_view StarterPolicy();

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CAPCTL_POLICY_COMMANDS_H_
