// LaunchSettings: what a service's sandbox is made of, as a reload compares
// it with what its process was started with.
//
// A reload that changes any of these for a service that runs or starts
// restarts it (ServiceHost::PolicyChanged): a grant withdrawn or a
// protection tightened must not stay in force in the process that has it.
// Who may connect, what it may request, acceptsFds, readiness and the
// restart settings apply without one, and are not here.
//
// The grants are held as the capabilities they name, not as indices into a
// policy: a reload may renumber the capabilities, or keep a name and change
// its path or access. Pure values: no I/O.
#ifndef CAPBROKER_BROKER_SERVICE_LAUNCH_SETTINGS_H_
#define CAPBROKER_BROKER_SERVICE_LAUNCH_SETTINGS_H_

#include <string>
#include <vector>

#include "broker/policy/policy.h"

namespace capbroker::service {

// The capabilities `spec`'s grants name in `policy` (which holds `spec`:
// its grant indices are in range), in order (fds 3..).
std::vector<CapabilitySpec> StartGrants(const Policy& policy, const ServiceSpec& spec);

// A service's launch settings, borrowed: its spec (of which only the launch
// fields are compared) and its StartGrants.
struct LaunchSettings {
  const ServiceSpec& spec;
  const std::vector<CapabilitySpec>& grants;
};

// The settings that differ between `before` and `after`, by their policy
// names, in a fixed order: "command", "environment", "user", "group",
// "sandbox" (its protections), "limits", "grants", "startTimeoutMs". Empty
// when none does.
std::vector<std::string> ChangedLaunchSettings(const LaunchSettings& before,
                                               const LaunchSettings& after);

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_LAUNCH_SETTINGS_H_
