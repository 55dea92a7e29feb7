#include "broker/policy/policy.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/policy/excerpt.h"
#include "sdk/wire/names.h"

namespace capbroker {
namespace {

using schema::Access;

std::string DescribeIdentity(const Identity& identity) {
  if (!identity.service.empty()) return absl::StrCat("service ", Quoted(identity.service));
  // Client-influenced text (names, exe paths) goes through Excerpt/Quoted:
  // denials end up in replies and logs and must stay one printable line.
  return absl::StrCat("uid=", identity.uid, " gid=", identity.gid, " exe=",
                      identity.exe.empty() ? "?" : Excerpt(identity.exe, PATH_MAX));
}

bool Matches(const PrincipalSpec& principal, const Identity& identity) {
  // A service is its own principal, whatever uid it runs as.
  if (!identity.service.empty()) return false;
  if (principal.any_user) return true;
  bool any_criterion = false;
  if (principal.uid.has_value()) {
    if (*principal.uid != identity.uid) return false;
    any_criterion = true;
  }
  if (principal.gid.has_value()) {
    if (*principal.gid != identity.gid) return false;
    any_criterion = true;
  }
  if (!principal.exe.empty()) {
    // An unknown exe (empty) never equals a non-empty criterion.
    if (principal.exe != identity.exe) return false;
    any_criterion = true;
  }
  // A principal without criteria is rejected by the parser; if one is built
  // by hand anyway, it matches nobody (fail closed).
  return any_criterion;
}

// `names` quoted, joined with ", ": the first kMaxNamedPrincipals, then
// " and N more" for the rest.
std::string QuotedNames(const std::vector<absl::string_view>& names) {
  const size_t named = std::min(names.size(), kMaxNamedPrincipals);
  std::vector<std::string> quoted;
  for (size_t i = 0; i < named; ++i) quoted.push_back(Quoted(names[i]));
  std::string text = absl::StrJoin(quoted, ", ");
  if (names.size() > named) absl::StrAppend(&text, " and ", names.size() - named, " more");
  return text;
}

bool Contains(const std::vector<size_t>& grants, size_t capability_index) {
  for (size_t grant : grants) {
    if (grant == capability_index) return true;
  }
  return false;
}

}  // namespace

bool AccessAllows(Access granted, Access requested) {
  if (granted == Access::UNSPECIFIED) return false;
  if (requested == Access::UNSPECIFIED || requested == granted) {
    // A granted value the schema does not know is never handed out.
    return IsConcreteAccess(granted);
  }
  switch (granted) {
    case Access::READ_WRITE:
      return requested == Access::READ || requested == Access::WRITE ||
             requested == Access::APPEND;
    case Access::WRITE:
      return requested == Access::APPEND;
    default:
      return false;
  }
}

Policy::Policy(std::string source, std::vector<CapabilitySpec> capabilities,
               std::vector<PrincipalSpec> principals, std::vector<ServiceSpec> services)
    : source_(std::move(source)),
      capabilities_(std::move(capabilities)),
      principals_(std::move(principals)),
      services_(std::move(services)) {
  // emplace keeps the first of duplicate names; the parser forbids them.
  capability_index_.reserve(capabilities_.size());
  for (size_t i = 0; i < capabilities_.size(); ++i) {
    capability_index_.emplace(capabilities_[i].name, i);
  }
  service_index_.reserve(services_.size());
  for (size_t i = 0; i < services_.size(); ++i) {
    service_index_.emplace(services_[i].name, i);
  }
}

const ServiceSpec* Policy::FindService(absl::string_view name) const {
  auto it = service_index_.find(name);
  return it == service_index_.end() ? nullptr : &services_[it->second];
}

std::vector<std::string> Policy::PrincipalNames(const Identity& identity) const {
  if (!identity.service.empty()) return {identity.service};
  std::vector<std::string> names;
  for (const PrincipalSpec* principal : MatchingPrincipals(identity)) {
    names.push_back(principal->name);
  }
  return names;
}

ConnectDecision Policy::DecideConnect(const Identity& identity,
                                      absl::string_view service_name) const {
  ConnectDecision decision;
  decision.service = FindService(service_name);
  if (decision.service == nullptr) {
    decision.status = absl::NotFoundError(
        absl::StrCat("no service named ", Quoted(service_name), " in the policy"));
    return decision;
  }
  std::vector<std::string> names = PrincipalNames(identity);
  for (const std::string& allowed : decision.service->connect) {
    for (const std::string& name : names) {
      if (name == allowed) {
        decision.principal = name;
        decision.status = absl::OkStatus();
        return decision;
      }
    }
  }
  decision.status = absl::PermissionDeniedError(absl::StrCat(
      "service ", Quoted(service_name), " does not list ",
      names.empty() ? "any principal matching " + DescribeIdentity(identity)
                    : QuotedNames(std::vector<absl::string_view>(names.begin(), names.end())),
      " in connect"));
  return decision;
}

const CapabilitySpec* Policy::FindCapability(absl::string_view name) const {
  auto it = capability_index_.find(name);
  return it == capability_index_.end() ? nullptr : &capabilities_[it->second];
}

std::vector<const PrincipalSpec*> Policy::MatchingPrincipals(
    const Identity& identity) const {
  std::vector<const PrincipalSpec*> matching;
  for (const PrincipalSpec& principal : principals_) {
    if (Matches(principal, identity)) matching.push_back(&principal);
  }
  return matching;
}

Decision Policy::Decide(const Identity& identity, absl::string_view capability_name,
                        Access requested) const {
  Decision decision;
  decision.capability = FindCapability(capability_name);
  if (decision.capability == nullptr) {
    decision.status = absl::NotFoundError(absl::StrCat(
        "no capability named ", Quoted(capability_name), " in the policy"));
    return decision;
  }
  const CapabilitySpec& capability = *decision.capability;
  size_t index = decision.capability - capabilities_.data();

  // The first principal in policy order that matches and grants. The list
  // of matching principals is built only to explain a denial: a grant is
  // the common case and must not allocate for it.
  const PrincipalSpec* granting = nullptr;
  if (!identity.service.empty()) {
    const ServiceSpec* service = FindService(identity.service);
    if (service == nullptr || !Contains(service->grants, index)) {
      decision.status = absl::PermissionDeniedError(absl::StrCat(
          DescribeIdentity(identity), " is not granted ", Quoted(capability.name)));
      return decision;
    }
    return Grant(decision, capability, identity.service, "service", requested);
  }
  for (const PrincipalSpec& principal : principals_) {
    if (Matches(principal, identity) && Contains(principal.grants, index)) {
      granting = &principal;
      break;
    }
  }
  if (granting == nullptr) {
    std::vector<const PrincipalSpec*> matching = MatchingPrincipals(identity);
    std::string message =
        absl::StrCat("no principal matching ", DescribeIdentity(identity),
                     " grants ", Quoted(capability.name));
    if (matching.empty()) {
      absl::StrAppend(&message, "; no principal matches this client");
    } else {
      std::vector<absl::string_view> names;
      for (const PrincipalSpec* principal : matching) names.push_back(principal->name);
      absl::StrAppend(&message, matching.size() == 1 ? "; principal " : "; principals ",
                      QuotedNames(names),
                      matching.size() == 1 ? " matches but does not grant "
                                           : " match but do not grant ",
                      Quoted(capability.name));
    }
    decision.status = absl::PermissionDeniedError(message);
    return decision;
  }

  return Grant(decision, capability, granting->name, "principal", requested);
}

Decision& Policy::Grant(Decision& decision, const CapabilitySpec& capability,
                        const std::string& principal, absl::string_view role,
                        Access requested) {
  decision.principal = principal;
  if (!AccessAllows(capability.access, requested)) {
    decision.status = absl::PermissionDeniedError(absl::StrCat(
        Quoted(capability.name), " is granted ", AccessName(capability.access),
        " access by ", role, " ", Quoted(principal), "; ", AccessName(requested),
        " was requested"));
    return decision;
  }
  if (capability.kind == Kind::kMemory && requested != Access::UNSPECIFIED &&
      requested != Access::READ && requested != Access::READ_WRITE) {
    // A memfd is mapped, and a shared mapping needs read access: there is
    // no write-only or append-only memory to hand out.
    decision.status = absl::InvalidArgumentError(absl::StrCat(
        Quoted(capability.name), " is memory: ask for read or readWrite, not ",
        AccessName(requested)));
    return decision;
  }
  decision.access = requested == Access::UNSPECIFIED ? capability.access : requested;
  decision.status = absl::OkStatus();
  return decision;
}

}  // namespace capbroker
