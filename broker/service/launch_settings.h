// LaunchSettings: what a service's sandbox is made of, as a reload compares
// it with what its process was started with.
//
// A reload that changes any of these for a service that runs or starts
// restarts it (ServiceHost::PolicyChanged): a grant withdrawn or a
// protection tightened must not stay in force in the process that has it.
// Who may connect, what it may request, acceptsFds, readiness and the
// restart settings apply without one, and are not here; startTimeoutMs
// only bounds a start under way, so it restarts a starting service only.
//
// The grants are held as the capabilities they name, not as indices into a
// policy: a reload may renumber the capabilities, or keep a name and change
// its path or access. Pure values: no I/O.
#ifndef CAPBROKER_BROKER_SERVICE_LAUNCH_SETTINGS_H_
#define CAPBROKER_BROKER_SERVICE_LAUNCH_SETTINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "broker/policy/policy.h"

namespace capbroker::service {

// The capabilities `spec`'s grants name in `policy` (which holds `spec`:
// its grant indices are in range), in order (fds 3..).
std::vector<CapabilitySpec> StartGrants(const Policy& policy, const ServiceSpec& spec);

// A service's launch settings, borrowed: its spec (of which only the launch
// fields are compared), its StartGrants, and the uid and gid it runs as
// (the host's ServiceIdentity): user and group are compared as those, so
// that one left unset and one set to its default (nobody on a root broker,
// the broker's own ids otherwise) are the same.
struct LaunchSettings {
  const ServiceSpec& spec;
  const std::vector<CapabilitySpec>& grants;
  uint32_t uid;
  uint32_t gid;
};

// Where the instance whose settings are compared is: its launch under way
// (kStarting), or its program running (kRunning).
enum class InstancePhase { kStarting, kRunning };

// The settings that differ between `before` and `after`, by their policy
// names, in a fixed order: "command", "environment", "user", "group",
// "sandbox" (its protections), "limits", "grants", "startTimeoutMs" (for a
// kStarting instance only: it bounds nothing once the program runs, and a
// running one just takes the new value). Empty when none does.
std::vector<std::string> ChangedLaunchSettings(const LaunchSettings& before,
                                               const LaunchSettings& after,
                                               InstancePhase phase);

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_LAUNCH_SETTINGS_H_
