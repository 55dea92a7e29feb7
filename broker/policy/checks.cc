#include "broker/policy/checks.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/policy/excerpt.h"
#include "broker/policy/spelling.h"
#include "sdk/wire/request_text.h"

namespace capbroker {
std::string ToString(capnp::Text::Reader text) {
  return std::string(text.cStr(), text.size());
}

bool IsValidName(absl::string_view name) { return wire::IsPolicyName(name); }

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

void Checks::Error(absl::string_view path, absl::string_view message) {
  diagnostics_.AddAtPath(path, message);
}

std::string Checks::Label(absl::string_view what, absl::string_view list, size_t index,
                          absl::string_view name) {
  if (IsValidName(name)) return absl::StrCat(what, " '", name, "'");
  return absl::StrCat(list, "[", index, "]");
}

void Checks::CheckName(absl::string_view what, absl::string_view path,
                       absl::string_view name,
                       absl::flat_hash_map<std::string, std::string>& seen) {
  std::string name_path = absl::StrCat(path, ".name");
  if (name.empty()) {
    Error(name_path, absl::StrCat(what, " has no name; give name = \"...\""));
    return;
  }
  if (!wire::HasPolicyNameCharacters(name)) {
    Error(name_path, absl::StrCat(what, " name ", Quoted(name), " is invalid: use 1 to ",
                                  kMaxNameLength, " of A-Z a-z 0-9 _ . -, the first a "
                                  "letter or digit"));
    return;
  }
  if (!IsValidName(name)) {
    Error(name_path,
          absl::StrCat(what, " name ", Quoted(name),
                       " is invalid: a name starts with a letter or digit",
                       name[0] == '-' ? absl::StrCat(" (capctl would read ", Quoted(name),
                                                     " as an option)")
                                      : ""));
    return;
  }
  auto [it, inserted] = seen.emplace(std::string(name), name_path);
  if (!inserted && full()) {
    // Where the first one is costs a scan of its line: skipped for a
    // message nobody sees (repeats on one long line were quadratic).
    Error(name_path, "");
    return;
  }
  if (!inserted) {
    LineColumn first = locator_.LineColumnAt(locator_.OffsetOf(it->second));
    // Principals and services share one name space: the first may be the
    // other kind, and then it is a clash, not a second definition.
    absl::string_view first_what = absl::StartsWith(it->second, "principals[")  ? "principal"
                                   : absl::StartsWith(it->second, "services[")   ? "service"
                                   : absl::StartsWith(it->second, "capabilities[") ? "capability"
                                                                                  : what;
    if (first_what != what) {
      Error(name_path, absl::StrCat(what, " '", name, "' has the name of ", first_what, " '",
                                    name, "' (at line ", first.line, ", column ", first.column,
                                    "); principals and services share one name space: "
                                    "rename one"));
      return;
    }
    Error(name_path, absl::StrCat(what, " '", name, "' is defined twice (first at line ",
                                  first.line, ", column ", first.column,
                                  "); names must be unique"));
  }
}

void Checks::CheckPath(absl::string_view label, absl::string_view path,
                       absl::string_view value, absl::string_view field) {
  std::optional<std::string> problem = PathProblem(value, field);
  if (problem.has_value()) Error(path, absl::StrCat(label, ": ", *problem));
}

std::optional<std::string> Checks::IntegerSource(absl::string_view path) const {
  const TextNode* node = locator_.Find(path);
  if (node == nullptr || node->kind != TextValueKind::kInteger) return std::nullopt;
  absl::string_view source = locator_.SourceOf(*node);
  if (!absl::ConsumePrefix(&source, "-")) return std::string(source);
  // The number token ends the node and holds no space; a comment ends at
  // a newline, which is space.
  const size_t space = source.find_last_of(" \t\n\r\v\f");
  if (space != absl::string_view::npos) source.remove_prefix(space + 1);
  return absl::StrCat("-", source);
}

std::optional<uint32_t> Checks::Id(int64_t value, absl::string_view field,
                                   const std::string& path, const std::string& label,
                                   absl::string_view when_left_out, bool root_allowed) {
  std::string field_path = absl::StrCat(path, ".", field);
  // Left out, the field reads as the schema's default (-1). Written, every
  // value must be an id: `gid = -1` would otherwise silently drop the
  // criterion and widen the rule to any gid.
  if (!Given(field_path)) return std::nullopt;
  // Ids are decimal everywhere else (id(1), /etc/passwd): one written with
  // a leading 0 is almost surely meant in decimal, and read as octal it
  // names another user. Refused, naming both readings, as a decimal mode
  // is.
  std::optional<std::string> source = IntegerSource(field_path);
  absl::string_view digits = source.has_value() ? absl::string_view(*source) : "";
  bool negative = absl::ConsumePrefix(&digits, "-");
  if (digits.size() > 1 && digits[0] == '0' && absl::ascii_isdigit(digits[1])) {
    // The decimal reading is suggested only when it is an id this field
    // takes: `user = 00` must not be told to write the root it refuses.
    absl::string_view decimal = digits;
    while (decimal.size() > 1 && decimal[0] == '0') decimal.remove_prefix(1);
    int64_t meant = -1;
    bool valid = !negative && absl::SimpleAtoi(decimal, &meant) && meant <= kMaxPolicyId &&
                 (meant != 0 || root_allowed);
    Error(field_path, absl::StrCat(label, ": ", field, " ", *source, " is octal here (= ",
                                   value, " decimal); write ids in decimal, without a "
                                   "leading 0",
                                   valid ? absl::StrCat(": ", decimal) : ""));
    return std::nullopt;
  }
  // The sign is judged as written, not by the value: `uid = -0` (or
  // `gid = -0x0`) reads as 0, root, yet a negative id is refused whatever
  // it reads as.
  if (negative || value < 0 || value > kMaxPolicyId) {
    std::string written = source.has_value() ? *source : absl::StrCat(value);
    Error(field_path,
          absl::StrCat(label, ": ", field, " ", written, " is out of range: 0 to ",
                       kMaxPolicyId, " (or leave it out to ", when_left_out, ")"));
    return std::nullopt;
  }
  return static_cast<uint32_t>(value);
}

std::vector<size_t> Checks::Grants(capnp::List<capnp::Text>::Reader grants,
                                   const std::string& path, const std::string& label,
                                   const CapabilityNames& capabilities) {
  std::vector<size_t> indices;
  absl::flat_hash_map<size_t, size_t> granted;  // capability -> grant index
  for (size_t i = 0; i < grants.size(); ++i) {
    std::string name = ToString(grants[i]);
    std::string grant_path = absl::StrCat(path, "[", i, "]");
    auto it = capabilities.index.find(name);
    if (it == capabilities.index.end()) {
      // Suggestions cost a scan of all names: skip them once nobody sees them.
      std::string suggestion =
          diagnostics_.full() ? "" : DidYouMean(name, capabilities.all);
      Error(grant_path, absl::StrCat(label, " grants ", Quoted(name),
                                     ", which is not a capability in this policy",
                                     suggestion));
      continue;
    }
    if (!granted.emplace(it->second, i).second) {
      Error(grant_path,
            absl::StrCat(label, " grants ", Quoted(name), " twice; list it once"));
      continue;
    }
    indices.push_back(it->second);
  }
  return indices;
}

}  // namespace capbroker
