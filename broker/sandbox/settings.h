// The settings of a service's sandbox: which protections are required, the
// socket families it may use, its resource limits, and the environment
// variables the sandbox sets itself.
//
// Plain values, apart from Launch (sandbox.h), so that the policy can hold
// them without linking the launcher.
#ifndef CAPBROKER_BROKER_SANDBOX_SETTINGS_H_
#define CAPBROKER_BROKER_SANDBOX_SETTINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace capbroker::sandbox {

enum class Requirement { kRequired, kBestEffort, kOff };

// Address families a service may create sockets in (socket, socketpair).
enum class AddressFamily { kUnix, kInet, kInet6, kNetlink };

// The protections, named after systemd's directives where one exists.
struct Protections {
  Requirement private_users = Requirement::kRequired;    // user namespace
  Requirement protect_system = Requirement::kRequired;   // mount namespace, minimal root
  Requirement private_pids = Requirement::kRequired;     // pid namespace
  Requirement private_ipc = Requirement::kRequired;      // ipc namespace
  Requirement protect_hostname = Requirement::kRequired; // uts namespace
  Requirement private_network = Requirement::kRequired;  // network namespace
  Requirement no_new_privileges = Requirement::kRequired;
  Requirement drop_capabilities = Requirement::kRequired;  // bounding set, ambient
  Requirement system_call_filter = Requirement::kRequired; // seccomp
  Requirement landlock = Requirement::kRequired;
  // Enforced by the seccomp filter (socket, socketpair), so not at all when
  // system_call_filter is off; Landlock (ABI 4+) also denies TCP bind and
  // connect unless kInet or kInet6 is allowed.
  std::vector<AddressFamily> restrict_address_families = {AddressFamily::kUnix};
};

struct ResourceLimits {
  // 0: leave the limit the broker has.
  uint64_t open_files = 0;       // RLIMIT_NOFILE
  uint64_t address_space = 0;    // RLIMIT_AS, bytes
  uint64_t processes = 0;        // RLIMIT_NPROC
  uint64_t cpu_seconds = 0;      // RLIMIT_CPU
  // cgroup v2, applied only when `cgroup_parent` is a delegated cgroup
  // directory the broker can write, whose cgroup.subtree_control enables the
  // memory and pids controllers; otherwise listed as missing ("cgroup: ..."):
  // these limits are always best-effort.
  uint64_t memory_max = 0;       // memory.max, bytes
  uint64_t pids_max = 0;         // pids.max
  std::string cgroup_parent;
};

// Set by the sandbox for every service (fd_layout.h); a spec's environment
// may not set them.
inline constexpr absl::string_view kReservedVariables[] = {"LISTEN_FDS", "LISTEN_PID",
                                                           "LISTEN_FDNAMES", "CAPBROKER_FD"};

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_SETTINGS_H_
