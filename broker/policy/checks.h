// Checks shared by the parts of policy validation: names, paths, ids and
// lists of capability names, each error reported at its place in the text.
#ifndef CAPBROKER_BROKER_POLICY_CHECKS_H_
#define CAPBROKER_BROKER_POLICY_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "broker/policy/diagnostics.h"
#include "broker/policy/text_locator.h"
#include "capnp/blob.h"
#include "capnp/list.h"
#include "sdk/wire/limits.h"

namespace capbroker {

// Bytes in a capability, principal or service name: the wire's limit, which
// the form of a name (sdk/wire/request_text.h) holds them to.
inline constexpr size_t kMaxNameLength = wire::kMaxNameBytes;
// Bytes in a path: PATH_MAX (4096) includes the terminating NUL.
inline constexpr size_t kMaxPathLength = 4095;
// The largest uid or gid a policy may name. uid_t and gid_t are 32 bits;
// (uid_t)-1 means "no change" to chown and is never the id of a process.
inline constexpr int64_t kMaxPolicyId = 0xFFFFFFFELL;

std::string ToString(capnp::Text::Reader text);

// 1 to kMaxNameLength of [A-Za-z0-9_.-], the first a letter or digit:
// capctl takes names as arguments, and would read "--motd" or "-h" as an
// option. The one rule: wire::IsPolicyName, which the client library holds
// the broker's names to.
bool IsValidName(absl::string_view name);

// Why `value` (the path in `field`) is not an absolute, normalized path, or
// nullopt when it is. Normalized means the broker opens exactly the file the
// policy names: no `.`/`..` for a reviewer to resolve, no `//` or trailing
// `/` that make two spellings of one path.
std::optional<std::string> PathProblem(absl::string_view value, absl::string_view field);

// The capabilities of a policy by name, for resolving grant lists.
struct CapabilityNames {
  absl::flat_hash_map<std::string, size_t> index;  // name -> first index
  std::vector<std::string> all;  // the valid ones, for "did you mean"
};

class Checks {
 public:
  // Both must outlive this object.
  Checks(const TextLocator& locator, Diagnostics& diagnostics)
      : locator_(locator), diagnostics_(diagnostics) {}

  const TextLocator& locator() const { return locator_; }
  size_t error_count() const { return diagnostics_.count(); }
  // True once no more errors are shown (Diagnostics::full): costly parts of
  // a message nobody will see, such as a "did you mean", are skipped.
  bool full() const { return diagnostics_.full(); }

  // Records `message` at field path `path` (e.g. "principals[2].match").
  void Error(absl::string_view path, absl::string_view message);

  // "capability 'motd'", or "capabilities[3]" when the name is unusable.
  static std::string Label(absl::string_view what, absl::string_view list,
                           size_t index, absl::string_view name);

  // Checks a name's form and its uniqueness within `seen` (name -> path of
  // its first definition).
  void CheckName(absl::string_view what, absl::string_view path, absl::string_view name,
                 absl::flat_hash_map<std::string, std::string>& seen);

  void CheckPath(absl::string_view label, absl::string_view path,
                 absl::string_view value, absl::string_view field = "path");

  // Whether the field at `path` is written in the text (as opposed to
  // left out, when the decoded value is the schema's default).
  bool Given(absl::string_view path) const { return locator_.Find(path) != nullptr; }

  // The text of the integer written at `path` as the policy spells it
  // ("0600", "0x1f", "-1"), or nullopt when the field is left out or is not
  // an integer. TextCodec reads numbers as C does (a leading 0 is octal):
  // the spelling tells a value meant in one base from one read in another.
  // A negative number is two tokens, '-' and the number, which spaces and
  // comments may part: it is given as "-" and the number, so that nothing
  // between them (a comment's bytes, a newline) reaches a message.
  std::optional<std::string> IntegerSource(absl::string_view path) const;

  // A uid or gid field (`field` of the struct at `path`): nullopt when it is
  // left out (the schema's default, -1, stands for that), an error when it
  // is written with a value outside 0..kMaxPolicyId, -1 included: -1 is no
  // way to say "any"; or with a minus sign, whatever the value (`-0` is no
  // way to say 0); or with a leading 0 (`uid = 01000` is octal, 512, not
  // the user 1000 it seems to name). `when_left_out` says what leaving it
  // out means ("match any"). `root_allowed` says whether the caller takes
  // 0 (it refuses 0 itself if not): only an id it takes is ever suggested.
  std::optional<uint32_t> Id(int64_t value, absl::string_view field,
                             const std::string& path, const std::string& label,
                             absl::string_view when_left_out, bool root_allowed);

  // Resolves a list of capability names (at `path`, of `label`) to
  // indices; unknown and repeated names are errors. Its length was
  // checked before decoding (list_sizes.h).
  std::vector<size_t> Grants(capnp::List<capnp::Text>::Reader grants,
                             const std::string& path, const std::string& label,
                             const CapabilityNames& capabilities);

 private:
  const TextLocator& locator_;
  Diagnostics& diagnostics_;
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_CHECKS_H_
