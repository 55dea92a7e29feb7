// What of the broker's own configuration its services must not read, and the
// launcher that hides it from them.
//
// A service's minimal root binds /etc whole, and Landlock lets it read
// there: the policy file (/etc/capbroker/policy.capnp, 0644 as the README
// has it) would be readable by every service, and it names every service,
// every capability's path and every principal's uid. capbrokerd therefore
// launches services with these paths hidden (sandbox::SandboxSpec::
// hidden_paths): an empty read-only file or directory mounted over each.
#ifndef CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_
#define CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/service/service_host.h"

namespace capbroker::daemon {

// Where the README puts the broker's configuration; hidden whether or not
// the policy in use lies there.
inline constexpr char kConfigDirectory[] = "/etc/capbroker";

// kConfigDirectory and the policy file at `policy_path`, by its canonical
// path (absolute, every symlink resolved): the path at which a service's
// root holds it, when it lies in /etc or a system directory. Resolved once,
// at start: a symlink on the way that root re-points later is not followed
// again (the file itself may be replaced at will; reloads read the same
// path).
absl::StatusOr<std::vector<std::string>> ConfigPathsToHide(absl::string_view policy_path);

// `launch` with `hidden` added to the hidden_paths of every spec.
service::Launcher LauncherHiding(std::vector<std::string> hidden, service::Launcher launch);

}  // namespace capbroker::daemon

#endif  // CAPBROKER_BROKER_DAEMON_HIDDEN_CONFIG_H_
