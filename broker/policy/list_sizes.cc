#include "broker/policy/list_sizes.h"

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "broker/policy/checks.h"
#include "broker/policy/policy_validator.h"
#include "broker/policy/service_validator.h"

namespace capbroker {
namespace {

// A limited list: the field `field` of the root (`owner` empty) or of each
// struct in the root's list `owner`.
struct ListLimit {
  absl::string_view owner;
  absl::string_view owner_what;  // one entry of `owner`, in messages
  absl::string_view field;
  size_t limit;
  absl::string_view entries;  // what the list holds, in messages
};

constexpr ListLimit kListLimits[] = {
    {"", "", "capabilities", kMaxCapabilities, "capabilities"},
    {"", "", "principals", kMaxPrincipals, "principals"},
    {"", "", "services", kMaxServices, "services"},
    {"principals", "principal", "grants", kMaxGrantsPerPrincipal, "grants"},
    {"services", "service", "grants", kMaxServiceGrants, "grants"},
    {"services", "service", "connect", kMaxConnectEntries, "connect names"},
    {"services", "service", "command", kMaxServiceArguments, "command arguments"},
    {"services", "service", "environment", kMaxServiceEnvironment, "environment entries"},
};

// The name a struct gives itself, when written as one plain literal
// ("motd"); "" otherwise. Only a valid name is ever shown (Checks::Label),
// and a valid name needs no escapes.
absl::string_view PlainName(const TextLocator& locator, const TextNode& entry) {
  absl::string_view name;
  for (size_t child : entry.children) {  // the last one counts, as in TextCodec
    const TextNode& node = locator.nodes()[child];
    if (node.field != "name") continue;
    absl::string_view source = locator.SourceOf(node);
    absl::string_view inside =
        source.size() >= 2 ? source.substr(1, source.size() - 2) : absl::string_view();
    bool plain = node.kind == TextValueKind::kString &&
                 inside.find_first_of("\"\\") == absl::string_view::npos;
    name = plain ? inside : absl::string_view();
  }
  return name;
}

// A list's limit, and the entry of the root's list that holds it.
struct Limited {
  const ListLimit* limit = nullptr;  // nullptr: the list has none
  const TextNode* entry = nullptr;   // nullptr: a list of the root
};

Limited LimitOf(const TextLocator& locator, const TextNode& list) {
  if (list.parent < 0) return {};
  const TextNode& holder = locator.nodes()[list.parent];
  absl::string_view owner;
  const TextNode* entry = nullptr;
  if (holder.parent >= 0) {
    const TextNode& owner_list = locator.nodes()[holder.parent];
    if (owner_list.kind != TextValueKind::kList || owner_list.parent != 0) return {};
    owner = owner_list.field;
    entry = &holder;
  }
  for (const ListLimit& limit : kListLimits) {
    if (limit.owner == owner && limit.field == list.field) return {&limit, entry};
  }
  return {};
}

}  // namespace

void CheckListSizes(const TextLocator& locator, Diagnostics& diagnostics) {
  for (const TextNode& node : locator.nodes()) {
    if (node.kind != TextValueKind::kList) continue;
    auto [limit, entry] = LimitOf(locator, node);
    if (limit == nullptr || node.children.size() <= limit->limit) continue;
    std::string message;
    if (entry == nullptr) {
      message = absl::StrCat("too many ", limit->entries, ": ", node.children.size(),
                             "; the limit is ", limit->limit);
    } else if (!diagnostics.full()) {  // the name costs a scan of the entry
      message = absl::StrCat(Checks::Label(limit->owner_what, limit->owner,
                                           entry->index_in_parent, PlainName(locator, *entry)),
                             " has ", node.children.size(), " ", limit->entries,
                             "; the limit is ", limit->limit);
    }
    diagnostics.AddAt(node.begin, message);
  }
}

}  // namespace capbroker
