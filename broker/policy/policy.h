// Policy: which principal may receive which capability, in memory.
//
// A Policy is the validated result of parsing a policy file (see
// policy_parser.h); it holds plain C++ values so it outlives the Cap'n Proto
// message it came from. Decide() is the broker's single authority on whether
// a client gets a capability: deny by default, grant only when a principal
// that matches the client lists the capability, and never wider than the
// capability's access. Pure: no I/O, no clock, no global state; a const
// Policy may be used from several threads at once.
//
// Example:
//   Decision d = policy.Decide(identity, "motd", schema::Access::READ);
//   if (!d.status.ok()) return d.status;   // one line naming the rule
//   Open(d.capability->path, d.access);
#ifndef CAPBROKER_BROKER_POLICY_POLICY_H_
#define CAPBROKER_BROKER_POLICY_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "broker/policy/identity.h"
#include "broker/sandbox/settings.h"
#include "schemas/broker.capnp.h"
#include "sdk/wire/names.h"  // AccessName, KindName: part of this API

namespace capbroker {

// What a capability hands out.
enum class Kind {
  kFile,       // an fd of one file
  kDirectory,  // a directory fd, and opens beneath it
  kMemory,     // a sealed memfd of a fixed size
};

// One capability of the policy. Fields that do not apply to the kind keep
// their zero values.
struct CapabilitySpec {
  std::string name;
  Kind kind = Kind::kFile;
  std::string path;  // file and directory: absolute and normalized
  // The widest access a client may ask for. Memory is always readWrite: a
  // sealed memfd cannot grow or shrink, but its contents are writable.
  schema::Access access = schema::Access::UNSPECIFIED;
  bool create = false;           // file: create if missing
  bool truncate = false;         // file: truncate on open
  bool follow_symlinks = false;  // file and directory
  uint32_t mode = 0;             // file: permission bits of a created file
  uint64_t size = 0;             // memory: bytes
  bool shared = false;           // memory: one memfd for all grantees
};

// One principal: who it matches and what it grants.
struct PrincipalSpec {
  std::string name;
  // Each criterion that is given must hold; any_user alone matches everyone.
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;  // compared with the primary gid
  std::string exe;              // exact string compare; empty: not a criterion
  bool any_user = false;
  std::vector<size_t> grants;  // indices into Policy::capabilities()
};

enum class Activation { kOnDemand, kAtStart };
enum class RestartMode { kOnFailure, kNever, kAlways };
enum class Readiness { kNotify, kExec };

// The longest wait before a restart, 30 s: the delay starts at a service's
// restartDelayMs, which may not be longer, and doubles per restart in a row
// up to this (ServiceHost).
inline constexpr uint32_t kMaxRestartDelayMs = 30 * 1000;

// One hosted service. Its principal is its name (see Identity::service).
struct ServiceSpec {
  std::string name;
  std::vector<std::string> command;      // command[0]: absolute path
  std::vector<std::string> environment;  // "KEY=VALUE"
  std::vector<size_t> grants;            // indices into Policy::capabilities()
  std::vector<std::string> connect;      // principal and service names
  Activation activation = Activation::kOnDemand;
  RestartMode restart = RestartMode::kOnFailure;
  uint32_t restart_limit = 5;
  uint32_t restart_delay_ms = 100;
  uint32_t start_timeout_ms = 10000;
  Readiness readiness = Readiness::kNotify;
  std::optional<uint32_t> user;   // unset: the broker's default
  std::optional<uint32_t> group;
  sandbox::Protections protections;
  sandbox::ResourceLimits limits;  // cgroup_parent is the daemon's, not here
  // Its clients may send it fds. If not, the broker makes the service's end
  // of every client connection refuse them (wire::RefuseFds).
  bool accepts_fds = false;
};

// The outcome of Policy::DecideConnect.
struct ConnectDecision {
  // OK: allowed. kNotFound: no such service. kPermissionDenied: not listed.
  absl::Status status;
  const ServiceSpec* service = nullptr;  // points into the Policy
  std::string principal;  // the principal (or service) that allowed it
};

// The outcome of Policy::Decide.
struct Decision {
  // OK: granted. kNotFound: no such capability. kPermissionDenied: the
  // policy does not grant it, or not with the access asked for. The message
  // is one line that names the rule.
  absl::Status status;
  // The capability asked for, when the policy has it (also on a denial for
  // access); points into the Policy, which must outlive the Decision.
  const CapabilitySpec* capability = nullptr;
  // The access to hand out: the request, or the grant when the request is
  // unspecified. Meaningful only when status is OK.
  schema::Access access = schema::Access::UNSPECIFIED;
  // The principal whose grant allowed it (the first in policy order), or,
  // on a denial for access, whose grant does not allow what was asked.
  std::string principal;
};

// The most principals a message names, in policy order: a denial's, and a
// hello reply's list of the principals a client matches. Nothing bounds how
// many principals match one client (an `anyUser` principal matches all, and
// a policy may hold 4096 of them): naming all would make a reply too large
// for one datagram. The rest are counted ("and N more").
inline constexpr size_t kMaxNamedPrincipals = 8;

// Whether `granted` covers `requested`. An unspecified request asks for the
// grant itself. readWrite covers read, write and append; write covers
// append (an append-only fd is a write fd that cannot seek back); nothing
// else covers anything but itself. An unspecified grant covers nothing.
bool AccessAllows(schema::Access granted, schema::Access requested);

class Policy {
 public:
  // An empty policy: it grants nothing.
  Policy() = default;

  // Takes validated specs (ParsePolicy checks them): names unique, grant
  // indices in range. `source` is the file it came from, for messages and
  // status reports.
  Policy(std::string source, std::vector<CapabilitySpec> capabilities,
         std::vector<PrincipalSpec> principals,
         std::vector<ServiceSpec> services = {});

  // Copying is allowed; pointers from FindCapability, MatchingPrincipals
  // and Decide point into the object they were obtained from.
  Policy(const Policy&) = default;
  Policy& operator=(const Policy&) = default;
  Policy(Policy&&) = default;
  Policy& operator=(Policy&&) = default;

  const std::string& source() const { return source_; }
  const std::vector<CapabilitySpec>& capabilities() const { return capabilities_; }
  const std::vector<PrincipalSpec>& principals() const { return principals_; }
  const std::vector<ServiceSpec>& services() const { return services_; }

  // The capability named `name`, or nullptr.
  const CapabilitySpec* FindCapability(absl::string_view name) const;

  // The service named `name`, or nullptr.
  const ServiceSpec* FindService(absl::string_view name) const;

  // The principals that match `identity`, in policy order. A service's
  // identity matches no principal: it is its own principal.
  std::vector<const PrincipalSpec*> MatchingPrincipals(const Identity& identity) const;

  // The names `identity` acts as: its matching principals, or for a
  // service its own name.
  std::vector<std::string> PrincipalNames(const Identity& identity) const;

  // Decides whether `identity` may receive `capability_name` with
  // `requested` access. Grants of all matching principals count (a union);
  // a service has exactly the grants of its ServiceSpec.
  Decision Decide(const Identity& identity, absl::string_view capability_name,
                  schema::Access requested) const;

  // Decides whether `identity` may connect to the service `service_name`:
  // one of the names it acts as must be in the service's `connect` list.
  ConnectDecision DecideConnect(const Identity& identity,
                                absl::string_view service_name) const;

 private:
  // Completes `decision` for a grant by `principal` (a `role`: "principal"
  // or "service"): checks the access.
  static Decision& Grant(Decision& decision, const CapabilitySpec& capability,
                         const std::string& principal, absl::string_view role,
                         schema::Access requested);

  std::string source_;
  std::vector<CapabilitySpec> capabilities_;
  std::vector<PrincipalSpec> principals_;
  std::vector<ServiceSpec> services_;
  absl::flat_hash_map<std::string, size_t> capability_index_;  // name -> index
  absl::flat_hash_map<std::string, size_t> service_index_;     // name -> index
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_POLICY_H_
