#include "broker/policy/policy_validator.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "broker/policy/excerpt.h"
#include "broker/policy/spelling.h"
#include "sdk/wire/names.h"

namespace capbroker {
namespace {

using schema::Access;

// uid_t and gid_t are 32 bits; (uid_t)-1 means "no change" to chown and is
// never the id of a process, so the largest usable id is one less.
constexpr int64_t kMaxId = 0xFFFFFFFELL;
// The schema's "criterion not given" for uid and gid.
constexpr int64_t kAnyId = -1;

std::string ToString(capnp::Text::Reader text) {
  return std::string(text.cStr(), text.size());
}

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

// Why `value` (the path in `field`) is not an absolute, normalized path, or
// nullopt when it is. Normalized means the broker opens exactly the file the
// policy names: no `.`/`..` for a reviewer to resolve, no `//` or trailing
// `/` that make two spellings of one path.
std::optional<std::string> PathProblem(absl::string_view value, absl::string_view field) {
  if (value.empty()) return absl::StrCat(field, " is empty; give an absolute path");
  if (value.find('\0') != absl::string_view::npos) {
    return absl::StrCat(field, " contains a NUL byte");
  }
  if (value.size() > kMaxPathLength) {
    return absl::StrCat(field, " is ", value.size(), " bytes long; the limit is ",
                        kMaxPathLength);
  }
  if (value[0] != '/') return absl::StrCat(field, " must be absolute (start with '/')");
  if (value == "/") return std::nullopt;
  if (value.back() == '/') return absl::StrCat(field, " must not end with '/'");
  if (absl::StrContains(value, "//")) {
    return absl::StrCat(field, " must be normalized: it contains '//'");
  }
  for (absl::string_view component : absl::StrSplit(value.substr(1), '/')) {
    if (component == "." || component == "..") {
      return absl::StrCat(field, " must be normalized: it contains a '", component,
                          "' component");
    }
  }
  return std::nullopt;
}

bool IsChoosable(Access access) {
  return access == Access::READ || access == Access::WRITE ||
         access == Access::READ_WRITE || access == Access::APPEND;
}

class Validator {
 public:
  Validator(const TextLocator& locator, Diagnostics& diagnostics)
      : locator_(locator), diagnostics_(diagnostics) {}

  std::optional<Policy> Run(policy::Policy::Reader policy, absl::string_view source) {
    size_t errors_before = diagnostics_.count();
    std::vector<CapabilitySpec> capabilities = Capabilities(policy.getCapabilities());
    std::vector<PrincipalSpec> principals = Principals(policy.getPrincipals());
    if (diagnostics_.count() != errors_before) return std::nullopt;
    return Policy(std::string(source), std::move(capabilities), std::move(principals));
  }

 private:
  void Error(absl::string_view path, absl::string_view message) {
    diagnostics_.AddAtPath(path, message);
  }

  // "capability 'motd'", or "capabilities[3]" when the name is unusable.
  static std::string Label(absl::string_view what, absl::string_view list,
                           size_t index, absl::string_view name) {
    if (IsValidName(name)) return absl::StrCat(what, " '", name, "'");
    return absl::StrCat(list, "[", index, "]");
  }

  // Checks a name's form and uniqueness within `seen`.
  void CheckName(absl::string_view what, absl::string_view path, absl::string_view name,
                 absl::flat_hash_map<std::string, std::string>& seen) {
    std::string name_path = absl::StrCat(path, ".name");
    if (name.empty()) {
      Error(name_path, absl::StrCat(what, " has no name; give name = \"...\""));
      return;
    }
    if (!IsValidName(name)) {
      Error(name_path, absl::StrCat(what, " name ", Quoted(name),
                                    " is invalid: use 1 to ", kMaxNameLength,
                                    " of A-Z a-z 0-9 _ . -"));
      return;
    }
    auto [it, inserted] = seen.emplace(std::string(name), name_path);
    if (!inserted) {
      LineColumn first = locator_.LineColumnAt(locator_.OffsetOf(it->second));
      Error(name_path, absl::StrCat(what, " '", name, "' is defined twice (first at line ",
                                    first.line, ", column ", first.column,
                                    "); names must be unique"));
    }
  }

  void CheckPath(absl::string_view label, absl::string_view path,
                 absl::string_view value, absl::string_view field = "path") {
    std::optional<std::string> problem = PathProblem(value, field);
    if (problem.has_value()) Error(path, absl::StrCat(label, ": ", *problem));
  }

  // ---- Capabilities ----

  std::vector<CapabilitySpec> Capabilities(
      capnp::List<policy::Capability>::Reader list) {
    std::vector<CapabilitySpec> specs;
    if (list.size() > kMaxCapabilities) {
      Error("capabilities", absl::StrCat("too many capabilities: ", list.size(),
                                         "; the limit is ", kMaxCapabilities));
      capabilities_unchecked_ = true;
      return specs;
    }
    absl::flat_hash_map<std::string, std::string> seen;
    specs.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      specs.push_back(Capability(list[i], i, seen));
      capability_names_.emplace(specs.back().name, i);  // first one wins
      all_capability_names_.push_back(specs.back().name);
    }
    return specs;
  }

  CapabilitySpec Capability(policy::Capability::Reader capability, size_t index,
                            absl::flat_hash_map<std::string, std::string>& seen) {
    CapabilitySpec spec;
    spec.name = ToString(capability.getName());
    std::string path = absl::StrCat("capabilities[", index, "]");
    std::string label = Label("capability", "capabilities", index, spec.name);
    CheckName("capability", path, spec.name, seen);
    switch (capability.which()) {
      case policy::Capability::UNSET:
        Error(path, absl::StrCat(label, " has no kind: write file = (...), "
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
        Error(path, absl::StrCat(label, " has a kind this broker does not know"));
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
    CheckPath(label, absl::StrCat(path, ".path"), spec.path);
    std::string access_path = absl::StrCat(path, ".access");
    if (!IsChoosable(spec.access)) {
      Error(access_path, absl::StrCat(label, ": access not given; choose read, "
                                             "write, readWrite or append"));
    } else {
      bool writes = spec.access != Access::READ;
      if (spec.create && !writes) {
        Error(absl::StrCat(path, ".create"),
              absl::StrCat(label, ": create = true needs write, readWrite or "
                                  "append access; access is ",
                           AccessName(spec.access)));
      }
      bool overwrites = spec.access == Access::WRITE || spec.access == Access::READ_WRITE;
      if (spec.truncate && !overwrites) {
        Error(absl::StrCat(path, ".truncate"),
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

  void Mode(const std::string& path, const std::string& label, uint32_t mode) {
    // TextCodec reads numbers as C does: 0600 is octal, 600 decimal. A
    // decimal mode is almost surely a missing 0 (600 would be 01130), so it
    // is refused rather than silently misread.
    const TextNode* node = locator_.Find(path);
    if (node != nullptr && node->kind == TextValueKind::kInteger) {
      absl::string_view source = locator_.SourceOf(*node);
      if (!source.empty() && source[0] != '0') {
        Error(path, absl::StrFormat("%s: mode %s is decimal here (= 0%o octal); "
                                    "write modes in octal with a leading 0, e.g. 0%s",
                                    label, source, mode, source));
        return;
      }
    }
    if ((mode & ~kModeMask) != 0) {
      Error(path, absl::StrFormat("%s: mode 0%o has bits beyond 07777", label, mode));
    } else if ((mode & 06000) != 0) {
      Error(path, absl::StrFormat("%s: mode 0%o sets setuid or setgid; a created "
                                  "file never gets them",
                                  label, mode));
    }
  }

  void Directory(policy::DirectoryCapability::Reader directory, const std::string& path,
                 const std::string& label, CapabilitySpec& spec) {
    spec.path = ToString(directory.getPath());
    spec.access = directory.getAccess();
    spec.follow_symlinks = directory.getFollowSymlinks();
    CheckPath(label, absl::StrCat(path, ".path"), spec.path);
    std::string access_path = absl::StrCat(path, ".access");
    if (!IsChoosable(spec.access)) {
      Error(access_path, absl::StrCat(label, ": access not given; choose read or "
                                             "readWrite"));
    } else if (spec.access != Access::READ && spec.access != Access::READ_WRITE) {
      Error(access_path,
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
      Error(absl::StrCat(path, ".size"),
            absl::StrCat(label, ": memory size must be 1 to ", kMaxMemorySize,
                         " bytes (1 GiB); it is ", spec.size,
                         spec.size == 0 ? " (not given?)" : ""));
    }
  }

  // ---- Principals ----

  std::vector<PrincipalSpec> Principals(capnp::List<policy::Principal>::Reader list) {
    std::vector<PrincipalSpec> specs;
    if (list.size() > kMaxPrincipals) {
      Error("principals", absl::StrCat("too many principals: ", list.size(),
                                       "; the limit is ", kMaxPrincipals));
      return specs;
    }
    absl::flat_hash_map<std::string, std::string> seen;
    specs.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      specs.push_back(Principal(list[i], i, seen));
    }
    return specs;
  }

  PrincipalSpec Principal(policy::Principal::Reader principal, size_t index,
                          absl::flat_hash_map<std::string, std::string>& seen) {
    PrincipalSpec spec;
    spec.name = ToString(principal.getName());
    std::string path = absl::StrCat("principals[", index, "]");
    std::string label = Label("principal", "principals", index, spec.name);
    CheckName("principal", path, spec.name, seen);
    Match(principal.getMatch(), absl::StrCat(path, ".match"), label, spec);
    Grants(principal.getGrants(), absl::StrCat(path, ".grants"), label, spec);
    return spec;
  }

  std::optional<uint32_t> Id(int64_t value, absl::string_view field,
                             const std::string& path, const std::string& label) {
    if (value == kAnyId) return std::nullopt;
    if (value < 0 || value > kMaxId) {
      Error(absl::StrCat(path, ".", field),
            absl::StrCat(label, ": ", field, " ", value, " is out of range: 0 to ",
                         kMaxId, " (or leave it out to match any)"));
      return std::nullopt;
    }
    return static_cast<uint32_t>(value);
  }

  void Match(policy::Match::Reader match, const std::string& path,
             const std::string& label, PrincipalSpec& spec) {
    spec.uid = Id(match.getUid(), "uid", path, label);
    spec.gid = Id(match.getGid(), "gid", path, label);
    spec.any_user = match.getAnyUser();
    spec.exe = ToString(match.getExe());
    std::string exe_path = absl::StrCat(path, ".exe");
    bool exe_given = locator_.Find(exe_path) != nullptr || !spec.exe.empty();
    if (exe_given) CheckPath(label, exe_path, spec.exe, "exe");
    bool ids_given = match.getUid() != kAnyId || match.getGid() != kAnyId;
    if (spec.any_user && (ids_given || exe_given)) {
      Error(absl::StrCat(path, ".anyUser"),
            absl::StrCat(label, ": anyUser = true with uid, gid or exe is ambiguous "
                                "(anyUser matches everyone); drop one or the other"));
    } else if (!spec.any_user && !ids_given && !exe_given) {
      Error(path, absl::StrCat(label, " matches nobody: give uid, gid, exe, or "
                                      "anyUser = true"));
    } else if (exe_given && !ids_given) {
      // Any user who can run the binary can connect and then exec it, and
      // the broker would see that binary: alone, exe would match everyone.
      Error(exe_path,
            absl::StrCat(label, ": exe alone can be borrowed by any user who can run "
                                "that program (connect, then exec it); add uid or gid"));
    }
  }

  void Grants(capnp::List<capnp::Text>::Reader grants, const std::string& path,
              const std::string& label, PrincipalSpec& spec) {
    if (grants.size() > kMaxGrantsPerPrincipal) {
      Error(path, absl::StrCat(label, " has ", grants.size(),
                               " grants; the limit is ", kMaxGrantsPerPrincipal));
      return;
    }
    // Without the capabilities, every grant would look unknown: noise.
    if (capabilities_unchecked_) return;
    absl::flat_hash_map<size_t, size_t> granted;  // capability -> grant index
    for (size_t i = 0; i < grants.size(); ++i) {
      std::string name = ToString(grants[i]);
      std::string grant_path = absl::StrCat(path, "[", i, "]");
      auto it = capability_names_.find(name);
      if (it == capability_names_.end()) {
        // Suggestions cost a scan of all names: skip them once nobody sees them.
        std::string suggestion =
            diagnostics_.full() ? "" : DidYouMean(name, all_capability_names_);
        Error(grant_path, absl::StrCat(label, " grants ", Quoted(name),
                                       ", which is not a capability in this policy",
                                       suggestion));
        continue;
      }
      if (!granted.emplace(it->second, i).second) {
        Error(grant_path, absl::StrCat(label, " grants ", Quoted(name),
                                       " twice; list it once"));
        continue;
      }
      spec.grants.push_back(it->second);
    }
  }

  const TextLocator& locator_;
  Diagnostics& diagnostics_;
  absl::flat_hash_map<std::string, size_t> capability_names_;
  std::vector<std::string> all_capability_names_;
  bool capabilities_unchecked_ = false;
};

}  // namespace

std::optional<Policy> ValidatePolicy(policy::Policy::Reader policy,
                                     const TextLocator& locator,
                                     absl::string_view source,
                                     Diagnostics& diagnostics) {
  return Validator(locator, diagnostics).Run(policy, source);
}

}  // namespace capbroker
