// The settings of a service's sandbox: which protections are required, the
// socket families it may use, its resource limits, and the environment
// variables the sandbox sets itself.
//
// Plain values, apart from the launcher (sandbox.h), so that the policy can hold
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
  // system_call_filter is off or missing, and then listed as missing;
  // Landlock (ABI 4+) also denies TCP bind and connect unless kInet or
  // kInet6 is allowed, with or without the filter.
  std::vector<AddressFamily> restrict_address_families = {AddressFamily::kUnix};
};

// RLIMIT_NOFILE, soft and hard, of a service whose limits leave it at 0:
// what systemd gives services (a soft 1024, which select(2) needs), or the
// broker's own hard limit when that is lower. Never the broker's own
// table: the broker raises its soft limit to its hard one, tens of
// thousands of fds or more.
inline constexpr uint64_t kDefaultOpenFiles = 1024;

// RLIMIT_NPROC, soft and hard, of a service in a user namespace of its own
// (privateUsers) whose limits leave both `processes` and `pids_max` at 0
// (either bounds its processes), or the broker's own hard limit when that
// is lower (DefaultProcesses): so that no service can fork until the
// host, and the broker, run out of pids. The kernel counts it per uid and
// user namespace, threads included: in the service's own namespace, the
// service's processes alone, however many services share its uid. Well
// above what the shipped services need (the scanner: 1 + 64 workers + 4
// closers). Without a user namespace the count would take in every process
// of the uid on the host (the broker's own user's, for a broker that is not
// root): no default there, and the launch says so under missing.
inline constexpr uint64_t kDefaultProcesses = 512;

struct ResourceLimits {
  // 0: kDefaultOpenFiles (see there).
  uint64_t open_files = 0;       // RLIMIT_NOFILE
  // 0: leave the limit the broker has (but processes, see
  // kDefaultProcesses, unless pids_max is set).
  uint64_t address_space = 0;    // RLIMIT_AS, bytes
  uint64_t processes = 0;        // RLIMIT_NPROC
  uint64_t cpu_seconds = 0;      // RLIMIT_CPU
  // cgroup v2, in a cgroup of the service's own made in `cgroup_parent`, a
  // delegated cgroup directory the broker can write, whose
  // cgroup.subtree_control enables the controller each needs (memory, pids).
  // Never best-effort: a limit asked for is applied, or the launch fails.
  uint64_t memory_max = 0;       // memory.max, bytes
  uint64_t pids_max = 0;         // pids.max
  std::string cgroup_parent;
};

// The policy's names of the limits in `limits` that need a cgroup:
// "memoryMax", "pidsMax", "memoryMax and pidsMax", or "" for none.
inline std::string CgroupLimitNames(const ResourceLimits& limits) {
  if (limits.memory_max != 0 && limits.pids_max != 0) return "memoryMax and pidsMax";
  if (limits.memory_max != 0) return "memoryMax";
  if (limits.pids_max != 0) return "pidsMax";
  return "";
}

// What the broker's cgroup directory (capbrokerd --cgroup DIR) offers its
// services, as found when it was checked (sandbox::CheckCgroupParent). The
// policy is validated against it: a service whose limits need a controller
// the directory does not enable is refused with the policy.
struct CgroupParent {
  std::string path;      // the directory; "" when the broker has none
  bool memory = false;   // its cgroup.subtree_control enables memory (memoryMax)
  bool pids = false;     // ... and pids (pidsMax)
  // Why the directory cannot be used now (a reload found it gone); "" when
  // it can.
  std::string unusable;
};

// Set by the sandbox for every service (fd_layout.h); a spec's environment
// may not set them.
inline constexpr absl::string_view kReservedVariables[] = {"LISTEN_FDS", "LISTEN_PID",
                                                           "LISTEN_FDNAMES", "CAPBROKER_FD"};

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_SETTINGS_H_
