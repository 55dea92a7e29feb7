#include "broker/policy/remote_paths.h"

#include <algorithm>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace capbroker {

std::vector<std::string> RemotePathNotes(const Policy& policy, const util::MountTable& mounts) {
  std::vector<std::string> notes;
  for (const CapabilitySpec& capability : policy.capabilities()) {
    if (capability.kind != Kind::kFile && capability.kind != Kind::kDirectory) continue;
    const util::Mount* mount = mounts.Find(capability.path);
    if (mount == nullptr) continue;
    std::optional<std::string> kind = util::RemoteFileSystemKind(mount->type);
    if (!kind.has_value()) continue;
    // Not mounted yet: what will be is not known.
    const bool automount = *kind == util::kAutomount;
    notes.push_back(absl::StrCat(
        "capability '", capability.name, "' (", capability.path, ") lies ",
        automount ? "under an automount point" : absl::StrCat("on ", *kind), " (", mount->type,
        " on ", mount->point, ")",
        automount ? ": what is mounted there when it is first opened may be a FUSE or network "
                    "file system, which may stop answering"
                  : ", which may stop answering",
        ": the broker opens it itself, in its only thread, and while it does not answer, no "
        "client is served; keep capability paths on local file systems"));
  }
  return notes;
}

}  // namespace capbroker
