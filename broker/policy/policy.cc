#include "broker/policy/policy.h"

#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/policy/excerpt.h"

namespace capbroker {
namespace {

using schema::Access;

std::string DescribeIdentity(const Identity& identity) {
  // Client-influenced text (names, exe paths) goes through Excerpt/Quoted:
  // denials end up in replies and logs and must stay one printable line.
  return absl::StrCat("uid=", identity.uid, " gid=", identity.gid, " exe=",
                      identity.exe.empty() ? "?" : Excerpt(identity.exe, PATH_MAX));
}

bool Matches(const PrincipalSpec& principal, const Identity& identity) {
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

bool Grants(const PrincipalSpec& principal, size_t capability_index) {
  for (size_t grant : principal.grants) {
    if (grant == capability_index) return true;
  }
  return false;
}

}  // namespace

bool AccessAllows(Access granted, Access requested) {
  if (granted == Access::UNSPECIFIED) return false;
  if (requested == Access::UNSPECIFIED || requested == granted) {
    // A granted value the schema does not know is never handed out.
    return granted == Access::READ || granted == Access::WRITE ||
           granted == Access::READ_WRITE || granted == Access::APPEND;
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
               std::vector<PrincipalSpec> principals)
    : source_(std::move(source)),
      capabilities_(std::move(capabilities)),
      principals_(std::move(principals)) {
  capability_index_.reserve(capabilities_.size());
  for (size_t i = 0; i < capabilities_.size(); ++i) {
    // emplace keeps the first of duplicate names; the parser forbids them.
    capability_index_.emplace(capabilities_[i].name, i);
  }
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
  for (const PrincipalSpec& principal : principals_) {
    if (Matches(principal, identity) && Grants(principal, index)) {
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
      std::vector<std::string> names;
      for (const PrincipalSpec* principal : matching) {
        names.push_back(Quoted(principal->name));
      }
      absl::StrAppend(&message, matching.size() == 1 ? "; principal " : "; principals ",
                      absl::StrJoin(names, ", "),
                      matching.size() == 1 ? " matches but does not grant "
                                           : " match but do not grant ",
                      Quoted(capability.name));
    }
    decision.status = absl::PermissionDeniedError(message);
    return decision;
  }

  if (!AccessAllows(capability.access, requested)) {
    decision.status = absl::PermissionDeniedError(absl::StrCat(
        Quoted(capability.name), " is granted ", AccessName(capability.access),
        " access by principal ", Quoted(granting->name), "; ",
        AccessName(requested), " was requested"));
    return decision;
  }
  decision.access = requested == Access::UNSPECIFIED ? capability.access : requested;
  decision.principal = granting->name;
  decision.status = absl::OkStatus();
  return decision;
}

}  // namespace capbroker
