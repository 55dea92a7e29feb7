#include "broker/policy/policy_validator.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "broker/policy/checks.h"
#include "broker/policy/excerpt.h"
#include "broker/policy/service_validator.h"
#include "sdk/base/escape.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/names.h"

namespace capbroker {
namespace {

// What a policy may hold must fit the wire: a client refuses a list entry
// of a longer name or path as no policy's (Client::List), and the broker's
// list pages are sized to hold the longest entry. (The lengths of lists:
// list_sizes.cc.)
static_assert(kMaxNameLength <= wire::kMaxNameBytes && kMaxPathLength <= wire::kMaxPathBytes,
              "a list entry must hold every name and path a policy can have");

using schema::Access;


class Validator {
 public:
  Validator(const TextLocator& locator, const BrokerContext& broker,
            Diagnostics& diagnostics)
      : checks_(locator, diagnostics), broker_(broker) {}

  std::optional<Policy> Run(policy::Policy::Reader policy, absl::string_view source) {
    size_t errors_before = checks_.error_count();
    std::vector<CapabilitySpec> capabilities = Capabilities(policy.getCapabilities());
    std::vector<PrincipalSpec> principals = Principals(policy.getPrincipals());
    std::vector<ServiceSpec> services = ValidateServices(
        policy.getServices(), checks_, capability_names_, principal_names_, broker_);
    if (checks_.error_count() != errors_before) return std::nullopt;
    return Policy(std::string(source), std::move(capabilities), std::move(principals),
                  std::move(services));
  }

 private:
  // ---- Capabilities ----

  std::vector<CapabilitySpec> Capabilities(
      capnp::List<policy::Capability>::Reader list) {
    std::vector<CapabilitySpec> specs;
    absl::flat_hash_map<std::string, std::string> seen;
    specs.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      specs.push_back(Capability(list[i], i, seen));
      capability_names_.index.emplace(specs.back().name, i);  // first one wins
      // Only a valid name is worth suggesting (and is safe to print).
      if (IsValidName(specs.back().name)) capability_names_.all.push_back(specs.back().name);
    }
    return specs;
  }

  CapabilitySpec Capability(policy::Capability::Reader capability, size_t index,
                            absl::flat_hash_map<std::string, std::string>& seen) {
    CapabilitySpec spec;
    spec.name = ToString(capability.getName());
    std::string path = absl::StrCat("capabilities[", index, "]");
    std::string label = Checks::Label("capability", "capabilities", index, spec.name);
    checks_.CheckName("capability", path, spec.name, seen);
    switch (capability.which()) {
      case policy::Capability::UNSET:
        checks_.Error(path, absl::StrCat(label, " has no kind: write file = (...), "
                                        "directory = (...) or memory = (...)"));
        break;
      case policy::Capability::FILE:
        spec.kind = Kind::kFile;
        File(capability.getFile(), absl::StrCat(path, ".file"), label, spec);
        break;
      case policy::Capability::DIRECTORY:
        spec.kind = Kind::kDirectory;
        Directory(capability.getDirectory(), absl::StrCat(path, ".directory"), label,
                  spec);
        break;
      case policy::Capability::MEMORY:
        spec.kind = Kind::kMemory;
        Memory(capability.getMemory(), absl::StrCat(path, ".memory"), label, spec);
        break;
      default:
        checks_.Error(path, absl::StrCat(label, " has a kind this broker does not know"));
    }
    return spec;
  }

  void File(policy::FileCapability::Reader file, const std::string& path,
            const std::string& label, CapabilitySpec& spec) {
    spec.path = ToString(file.getPath());
    spec.access = file.getAccess();
    spec.create = file.getCreate();
    spec.truncate = file.getTruncate();
    spec.follow_symlinks = file.getFollowSymlinks();
    spec.mode = file.getMode();
    PolicyPath(label, absl::StrCat(path, ".path"), spec);
    std::string access_path = absl::StrCat(path, ".access");
    if (!IsConcreteAccess(spec.access)) {
      checks_.Error(access_path, absl::StrCat(label, ": access not given; choose read, "
                                             "write, readWrite or append"));
    } else {
      bool writes = spec.access != Access::READ;
      if (spec.create && !writes) {
        checks_.Error(absl::StrCat(path, ".create"),
              absl::StrCat(label, ": create = true needs write, readWrite or "
                                  "append access; access is ",
                           AccessName(spec.access)));
      }
      bool overwrites = spec.access == Access::WRITE || spec.access == Access::READ_WRITE;
      if (spec.truncate && !overwrites) {
        checks_.Error(absl::StrCat(path, ".truncate"),
              absl::StrCat(label, ": truncate = true needs write or readWrite access; "
                                  "access is ",
                           AccessName(spec.access),
                           spec.access == Access::APPEND
                               ? " (an append-only grant must not destroy contents)"
                               : ""));
      }
    }
    Mode(absl::StrCat(path, ".mode"), label, spec.mode);
  }

  // A file or directory capability's path: well formed, and, unless the
  // capability follows symlinks, through none. The broker opens it with
  // RESOLVE_NO_SYMLINKS, so a path through a symlink (on Debian 12,
  // /bin/sh or /var/run) would fail every request with permissionDenied, a
  // denial the policy never made: refused here, with the path it resolves
  // to, as an exe is (ResolvedExe). One that cannot be checked is accepted:
  // its requests fail with the reason. So is one through a symlink that
  // another user could have put there (resolve_program cannot tell then):
  // they could otherwise have every reload and restart refused, and the
  // advice would write their target into the policy.
  void PolicyPath(const std::string& label, const std::string& path, const CapabilitySpec& spec) {
    size_t errors_before = checks_.error_count();
    checks_.CheckPath(label, path, spec.path);
    if (checks_.error_count() != errors_before) return;
    if (spec.follow_symlinks) {
      FollowedPath(label, path, spec);
      return;
    }
    if (!broker_.resolve_program) return;
    absl::StatusOr<std::string> resolved = broker_.resolve_program(spec.path);
    if (resolved.ok() && *resolved != spec.path) {
      checks_.Error(path, absl::StrCat(label, ": path ", EscapedKeepingUtf8(spec.path),
                                       " goes through a symbolic link, which the broker refuses "
                                       "at every request (it resolves to ",
                                       EscapedKeepingUtf8(*resolved),
                                       "): write that, or set followSymlinks = true"));
    } else if (absl::IsFailedPrecondition(resolved.status())) {
      checks_.Error(path, absl::StrCat(label, ": path ", resolved.status().message(),
                                       ", which the broker refuses at every request: name the "
                                       "file itself, or set followSymlinks = true"));
    }
  }

  // A capability's path with followSymlinks = true: the broker follows only
  // links that root or its own user alone could have put there or could
  // change (BrokerContext::check_followed_path). One through another user's
  // link, or through a directory another user could change, now, is
  // refused; what cannot be told is accepted (a request says why it fails).
  void FollowedPath(const std::string& label, const std::string& path,
                    const CapabilitySpec& spec) {
    if (!broker_.check_followed_path) return;
    absl::Status checked = broker_.check_followed_path(spec.path);
    if (!absl::IsFailedPrecondition(checked)) return;
    checks_.Error(path, absl::StrCat(label, ": path ", EscapedKeepingUtf8(spec.path),
                                     " has followSymlinks = true, but ", checked.message(),
                                     " (the broker refuses such a link at every request; "
                                     "without links to follow, set followSymlinks = false)"));
  }

  void Mode(const std::string& path, const std::string& label, uint32_t mode) {
    // TextCodec reads numbers as C does: 0600 is octal, 600 decimal. A
    // decimal mode is almost surely a missing 0 (600 would be 01130), so it
    // is refused rather than silently misread.
    std::optional<std::string> source = checks_.IntegerSource(path);
    if (source.has_value() && !source->empty() && absl::ascii_isdigit((*source)[0]) &&
        (*source)[0] != '0') {
      // 600 was meant as 0600, so that is suggested; but 0384 or 09 is no
      // number at all (8 and 9 are no octal digits): for those, the value
      // as read is suggested, written in octal (384 is 0600). A suggestion
      // the checks below would refuse (4755 as 04755 sets setuid; 4096 as
      // 010000 has bits beyond 07777) is left out.
      uint32_t meant = mode;
      if (std::all_of(source->begin(), source->end(),
                      [](char c) { return c >= '0' && c <= '7'; })) {
        meant = 0;
        for (char c : *source) meant = meant * 8 + static_cast<uint32_t>(c - '0');
      }
      std::string suggestion;
      if ((meant & ~kModeMask) == 0 && (meant & 06000) == 0) {
        suggestion = absl::StrFormat(", e.g. 0%o", meant);
      }
      checks_.Error(path, absl::StrFormat("%s: mode %s is decimal here (= 0%o octal); "
                                  "write modes in octal with a leading 0%s",
                                  label, *source, mode, suggestion));
      return;
    }
    if ((mode & ~kModeMask) != 0) {
      checks_.Error(path, absl::StrFormat("%s: mode 0%o has bits beyond 07777", label, mode));
    } else if ((mode & 06000) != 0) {
      checks_.Error(path, absl::StrFormat("%s: mode 0%o sets setuid or setgid; a created "
                                  "file never gets them",
                                  label, mode));
    }
  }

  void Directory(policy::DirectoryCapability::Reader directory, const std::string& path,
                 const std::string& label, CapabilitySpec& spec) {
    spec.path = ToString(directory.getPath());
    spec.access = directory.getAccess();
    spec.follow_symlinks = directory.getFollowSymlinks();
    PolicyPath(label, absl::StrCat(path, ".path"), spec);
    std::string access_path = absl::StrCat(path, ".access");
    if (!IsConcreteAccess(spec.access)) {
      checks_.Error(access_path, absl::StrCat(label, ": access not given; choose read or "
                                             "readWrite"));
    } else if (spec.access != Access::READ && spec.access != Access::READ_WRITE) {
      checks_.Error(access_path,
            absl::StrCat(label, ": directory access must be read or readWrite, not ",
                         AccessName(spec.access),
                         ": the directory itself is always opened read-only, and "
                         "readWrite lets clients open files beneath it for write "
                         "or append"));
    }
  }

  void Memory(policy::MemoryCapability::Reader memory, const std::string& path,
              const std::string& label, CapabilitySpec& spec) {
    spec.size = memory.getSize();
    spec.shared = memory.getShared();
    spec.access = Access::READ_WRITE;  // a sealed memfd: fixed size, writable
    if (spec.size == 0 || spec.size > kMaxMemorySize) {
      checks_.Error(absl::StrCat(path, ".size"),
            absl::StrCat(label, ": memory size must be 1 to ", kMaxMemorySize,
                         " bytes (1 GiB); it is ", spec.size,
                         spec.size == 0 ? " (not given?)" : ""));
    }
  }

  // ---- Principals ----

  std::vector<PrincipalSpec> Principals(capnp::List<policy::Principal>::Reader list) {
    std::vector<PrincipalSpec> specs;
    specs.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      specs.push_back(Principal(list[i], i, principal_names_.where));
    }
    return specs;
  }

  PrincipalSpec Principal(policy::Principal::Reader principal, size_t index,
                          absl::flat_hash_map<std::string, std::string>& seen) {
    PrincipalSpec spec;
    spec.name = ToString(principal.getName());
    std::string path = absl::StrCat("principals[", index, "]");
    std::string label = Checks::Label("principal", "principals", index, spec.name);
    checks_.CheckName("principal", path, spec.name, seen);
    Match(principal.getMatch(), absl::StrCat(path, ".match"), label, spec);
    spec.grants = checks_.Grants(principal.getGrants(), absl::StrCat(path, ".grants"),
                                 label, capability_names_);
    return spec;
  }


  void Match(policy::Match::Reader match, const std::string& path,
             const std::string& label, PrincipalSpec& spec) {
    spec.uid = checks_.Id(match.getUid(), "uid", path, label, "match any",
                          /*root_allowed=*/true);
    spec.gid = checks_.Id(match.getGid(), "gid", path, label, "match any",
                          /*root_allowed=*/true);
    spec.any_user = match.getAnyUser();
    spec.exe = ToString(match.getExe());
    std::string exe_path = absl::StrCat(path, ".exe");
    bool exe_given = checks_.locator().Find(exe_path) != nullptr || !spec.exe.empty();
    if (exe_given) {
      size_t errors_before = checks_.error_count();
      checks_.CheckPath(label, exe_path, spec.exe, "exe");
      if (checks_.error_count() == errors_before) ResolvedExe(exe_path, label, spec.exe);
    }
    // Written, even when out of range (Id reports that): a criterion given
    // wrongly is not a criterion left out.
    bool ids_given = checks_.Given(absl::StrCat(path, ".uid")) ||
                     checks_.Given(absl::StrCat(path, ".gid"));
    if (spec.any_user && (ids_given || exe_given)) {
      checks_.Error(absl::StrCat(path, ".anyUser"),
            absl::StrCat(label, ": anyUser = true with uid, gid or exe is ambiguous "
                                "(anyUser matches everyone); drop one or the other"));
    } else if (!spec.any_user && !ids_given && !exe_given) {
      // Not "exe" as a choice of its own: alone, it is refused below.
      checks_.Error(path, absl::StrCat(label, " matches nobody: give uid or gid (with exe "
                                      "to narrow it), or anyUser = true"));
    } else if (exe_given && !ids_given) {
      // Any user who can run the binary can connect and then exec it, and
      // the broker would see that binary: alone, exe would match everyone.
      checks_.Error(exe_path,
            absl::StrCat(label, ": exe alone can be borrowed by any user who can run "
                                "that program (connect, then exec it); add uid or gid"));
    }
  }


  // The kernel reports a client's executable by its resolved path, so an
  // exe through a symlink can never match: refused, naming the path to
  // write (see BrokerContext::resolve_program). One that cannot be checked
  // is accepted: it fails closed anyway (a rule that never matches denies),
  // and refusing it would let whoever controls a file system on its path
  // (a user's FUSE mount), or a symlink or directory on it, make every
  // reload fail.
  void ResolvedExe(const std::string& exe_path, const std::string& label,
                   const std::string& exe) {
    if (!broker_.resolve_program) return;
    absl::StatusOr<std::string> resolved = broker_.resolve_program(exe);
    if (resolved.ok() && *resolved != exe) {
      checks_.Error(exe_path, absl::StrCat(label, ": exe ", EscapedKeepingUtf8(exe),
                                           " goes through a symbolic link, and the kernel "
                                           "reports the executable as ",
                                           EscapedKeepingUtf8(*resolved), ": write that"));
    } else if (absl::IsFailedPrecondition(resolved.status())) {
      checks_.Error(exe_path, absl::StrCat(label, ": exe ", resolved.status().message(),
                                           ", and the kernel reports an executable by the "
                                           "path of the file itself: write that"));
    }
  }

  Checks checks_;
  const BrokerContext& broker_;
  CapabilityNames capability_names_;
  // Principal names and where each is defined: services share the space.
  PrincipalNames principal_names_;
};

}  // namespace

std::optional<Policy> ValidatePolicy(policy::Policy::Reader policy,
                                     const TextLocator& locator,
                                     absl::string_view source,
                                     const BrokerContext& broker,
                                     Diagnostics& diagnostics) {
  return Validator(locator, broker, diagnostics).Run(policy, source);
}

}  // namespace capbroker
