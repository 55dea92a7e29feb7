#include "broker/policy/load_notes.h"

#include <algorithm>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/remote_paths.h"
#include "broker/policy/script_exes.h"
#include "broker/util/mount_table.h"

namespace capbroker {

std::vector<std::string> LoadNotes(const Policy& policy) {
  const bool has_paths =
      std::any_of(policy.capabilities().begin(), policy.capabilities().end(),
                  [](const CapabilitySpec& c) { return c.kind != Kind::kMemory; });
  const bool has_exe =
      std::any_of(policy.principals().begin(), policy.principals().end(),
                  [](const PrincipalSpec& p) { return !p.exe.empty(); });
  if (!has_paths && !has_exe) return {};
  absl::StatusOr<util::MountTable> mounts = util::MountTable::Read();
  std::vector<std::string> notes;
  if (!mounts.ok()) {
    if (has_paths) {
      notes.push_back(absl::StrCat("cannot tell which capability paths lie on FUSE or network "
                                   "file systems: ", mounts.status().message()));
    }
    if (has_exe) {
      notes.push_back(absl::StrCat("cannot tell whether exe rules name scripts (which never "
                                   "match): ", mounts.status().message()));
    }
    return notes;
  }
  if (has_paths) notes = RemotePathNotes(policy, *mounts);
  if (has_exe) {
    for (std::string& note : ScriptExeNotes(policy, *mounts, util::MountTable::Read)) {
      notes.push_back(std::move(note));
    }
  }
  return notes;
}

}  // namespace capbroker
