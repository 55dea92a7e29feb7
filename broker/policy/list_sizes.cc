#include "broker/policy/list_sizes.h"

#include <algorithm>
#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "broker/policy/checks.h"
#include "capnp/schema.h"
#include "schemas/policy.capnp.h"
#include "sdk/wire/limits.h"

namespace capbroker {

// What a policy may hold must fit the wire: a client refuses a list of more
// entries as no policy's (Client::List), and a services report of more
// entries.
static_assert(kMaxCapabilities <= wire::kMaxListEntries, "a list must hold every capability");
static_assert(kMaxServices <= wire::kMaxServiceEntries, "a report must hold every service");

namespace {

// A limited list: the field `field` (a path such as "sandbox.x") of the
// root (`owner` empty) or of each struct in the root's list `owner`.
struct ListLimit {
  absl::string_view owner;
  absl::string_view owner_what;  // one entry of `owner`, in messages
  absl::string_view field;
  size_t limit;
  absl::string_view entries;  // what the list holds, in messages
  absl::string_view why;      // follows the limit in messages
};

// Every address family the schema knows, each once.
const size_t kAddressFamilies =
    capnp::Schema::from<policy::AddressFamily>().getEnumerants().size();

const ListLimit kListLimits[] = {
    {"", "", "capabilities", kMaxCapabilities, "capabilities", ""},
    {"", "", "principals", kMaxPrincipals, "principals", ""},
    {"", "", "services", kMaxServices, "services", ""},
    {"principals", "principal", "grants", kMaxGrantsPerPrincipal, "grants", ""},
    {"services", "service", "grants", kMaxServiceGrants, "grants", ""},
    {"services", "service", "connect", kMaxConnectEntries, "connect names", ""},
    {"services", "service", "command", kMaxServiceArguments, "command arguments", ""},
    {"services", "service", "environment", kMaxServiceEnvironment, "environment entries", ""},
    {"services", "service", "sandbox.restrictAddressFamilies", kAddressFamilies,
     "address families in restrictAddressFamilies",
     ", the number of address families there are: list each once"},
};

constexpr size_t kLargestNamedLimit =
    std::max({kMaxCapabilities, kMaxPrincipals, kMaxGrantsPerPrincipal, kMaxServices,
              kMaxServiceArguments, kMaxServiceEnvironment, kMaxServiceGrants,
              kMaxConnectEntries});
static_assert(kMaxAnyListEntries == kLargestNamedLimit,
              "any list may hold as many entries as the longest limited list, no more");

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

// A list's own limit, and the entry of the root's list that holds it.
struct Limited {
  const ListLimit* limit = nullptr;  // nullptr: only kMaxAnyListEntries
  const TextNode* entry = nullptr;   // nullptr: a list of the root
};

// The limit of the list at `field` of the root's list `owner`'s `entry`
// (of the root: `owner` empty, `entry` nullptr).
Limited Match(absl::string_view owner, absl::string_view field, const TextNode* entry) {
  for (const ListLimit& limit : kListLimits) {
    if (limit.owner == owner && limit.field == field) return {&limit, entry};
  }
  return {};
}

Limited LimitOf(const TextLocator& locator, const TextNode& list) {
  if (list.field.empty()) return {};  // the root, or an entry of a list
  // The fields from the root, or from an entry of one of the root's lists,
  // down to `list` ("sandbox.restrictAddressFamilies"): each step up is a
  // struct under a field, at most kMaxTextNesting of them.
  std::string field(list.field);
  const TextNode* node = &list;
  while (true) {
    const TextNode& parent = locator.nodes()[node->parent];
    if (parent.parent < 0) return Match("", field, nullptr);  // the root's
    const TextNode& grandparent = locator.nodes()[parent.parent];
    if (grandparent.kind == TextValueKind::kList) {
      if (grandparent.parent != 0) return {};  // in a list that is not the root's
      return Match(grandparent.field, field, &parent);
    }
    field = absl::StrCat(parent.field, ".", field);
    node = &parent;
  }
}

}  // namespace

void CheckListSizes(const TextLocator& locator, Diagnostics& diagnostics) {
  // A tree built to another limit would not hold, or would not tell, the
  // value past this one: refused rather than checked in part.
  if (locator.max_values() != kMaxPolicyValues) {
    diagnostics.AddAt(0, absl::StrCat("internal error: the policy was parsed with a limit of ",
                                      locator.max_values(), " values, not ", kMaxPolicyValues,
                                      "; please report this"));
    return;
  }
  const TextNode* past = locator.value_past_limit();
  for (const TextNode& node : locator.nodes()) {
    if (&node == past) {
      // A field at its name, a list's entry at itself.
      diagnostics.AddAt(node.field.empty() ? node.begin : node.field_offset,
                        absl::StrCat("too many values: this one is past the ", kMaxPolicyValues,
                                     " fields and list entries that a policy may hold together"));
    }
    if (node.kind != TextValueKind::kList) continue;
    size_t size = node.entries;
    auto [limit, entry] = LimitOf(locator, node);
    std::string message;
    if (limit == nullptr) {
      if (size <= kMaxAnyListEntries) continue;
      message = absl::StrCat(node.field.empty() ? std::string("a list")
                                                : absl::StrCat("'", node.field, "'"),
                             " has ", size, " entries; no list in a policy may have more than ",
                             kMaxAnyListEntries);
    } else if (size <= limit->limit) {
      continue;
    } else if (entry == nullptr) {
      message = absl::StrCat("too many ", limit->entries, ": ", size, "; the limit is ",
                             limit->limit, limit->why);
    } else if (!diagnostics.full()) {  // the name costs a scan of the entry
      message = absl::StrCat(Checks::Label(limit->owner_what, limit->owner,
                                           entry->index_in_parent, PlainName(locator, *entry)),
                             " has ", size, " ", limit->entries, "; the limit is ",
                             limit->limit, limit->why);
    }
    diagnostics.AddAt(node.begin, message);
  }
}

}  // namespace capbroker
