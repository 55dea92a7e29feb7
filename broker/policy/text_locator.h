// TextLocator: the structure of a Cap'n Proto text-format document, by byte
// offset.
//
// capnp::TextCodec reports errors as byte offsets and forgets where each value
// came from once it has filled a builder. The policy parser needs both
// directions: "which field is at offset 31?" to explain a codec error, and
// "where is capabilities[1].file.path?" to point a semantic error at the
// value an admin must edit. TextLocator parses the text itself into a small
// tree of values with their byte ranges and answers both questions.
//
// It also acts as the first, stricter syntax check: it accepts the subset of
// the text format a policy needs (structs `( name = value, ... )`, lists
// `[ ... ]`, double-quoted strings (adjacent ones concatenate, as in
// TextCodec), integers, floats, `-` numbers, identifiers, `#` comments) and
// rejects everything else with an exact offset. That matters for safety, not
// only for messages: TextCodec's recursive parser overflows the stack on deep
// nesting (`((((...` crashes it), and it silently wraps integer literals
// beyond 64 bits (`uid = 18446744073709551617` becomes uid 1). TextLocator
// refuses both, so such text never reaches TextCodec.
//
// Pure: no I/O. Cost is linear in the text; recursion depth is bounded by
// kMaxTextNesting. The tree's size is bounded by the `max_values` Parse is
// given: past it, the rest of the text is only checked, not built.
#ifndef CAPBROKER_BROKER_POLICY_TEXT_LOCATOR_H_
#define CAPBROKER_BROKER_POLICY_TEXT_LOCATOR_H_

#include <atomic>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace capbroker {

// Deepest nesting of structs and lists accepted. A policy needs 5 levels
// (policy, list, capability, file, value); 32 leaves room for schema growth
// while keeping TextCodec's recursion far from the stack limit.
inline constexpr int kMaxTextNesting = 32;

// The kinds of values the accepted text format has.
enum class TextValueKind {
  kStruct,      // ( field = value, ... )
  kList,        // [ value, ... ]
  kString,      // "..." (one or more adjacent literals)
  kInteger,     // 42, 0600 (octal), 0x1f (hex), optionally preceded by '-'
  kFloat,       // 1.5, 1e3, optionally preceded by '-'
  kIdentifier,  // read, true, void, ...
};

// One value in the text. Offsets are byte offsets into the parsed text.
struct TextNode {
  TextValueKind kind;
  size_t begin = 0;  // first byte of the value ('-' of a negative number)
  size_t end = 0;    // one past the last byte of the value
  // For a value inside a struct: the field name (pointing into the text)
  // and the offset of that name. Empty for list elements and the root.
  absl::string_view field;
  size_t field_offset = 0;
  // Index of the enclosing value in TextLocator::nodes(); -1 for the root.
  int parent = -1;
  // Position among the parent's children (the list index for list elements).
  size_t index_in_parent = 0;
  // Indices of the values directly inside a struct or list, in text order.
  // A struct or list still open at the value past the limit
  // (TextLocator::value_past_limit) holds only those up to it.
  std::vector<size_t> children;
  // How many values the text has directly inside a struct or list: those
  // of `children`, and those after the value past the limit.
  size_t entries = 0;
};

// One step of a field path: a field name, or an index into a list.
struct PathStep {
  std::string field;            // empty for an index step
  std::optional<size_t> index;  // set for an index step
};

// Splits "capabilities[1].file.access" into its steps; nullopt when `path`
// is malformed. "" is the root: no steps.
std::optional<std::vector<PathStep>> SplitPath(absl::string_view path);

// A syntax error: where and what.
struct TextSyntaxError {
  size_t offset = 0;
  std::string message;
};

// A 1-based line and column. Columns count UTF-8 characters, so they match
// what editors show for non-ASCII text; a tab counts as one.
struct LineColumn {
  size_t line = 1;
  size_t column = 1;
};

// Parse's `max_values` when the tree may hold every value of the text.
inline constexpr size_t kAllTextValues = std::numeric_limits<size_t>::max();

class TextLocator {
 public:
  // Parses `text`, which must stay alive as long as the locator is used.
  // Never fails: on a syntax error, syntax_error() is set and the tree holds
  // what was parsed before it (enough to name the enclosing field).
  //
  // A value is a field of a struct or an entry of a list: every node but
  // the root, counted in the text's order (the order of nodes()). The tree
  // holds at most `max_values` of them and the one past it
  // (value_past_limit()); after that one the text is still checked to its
  // end (syntax_error()) and the entries of the structs and lists still
  // open are still counted (TextNode::entries), but no value is added: a
  // text of more values than a caller accepts costs it no more memory than
  // one of `max_values`.
  static TextLocator Parse(absl::string_view text, size_t max_values = kAllTextValues);

  // The `max_values` given to Parse.
  size_t max_values() const { return max_values_; }

  // The value, in the text's order, past `max_values` (the tree's last
  // node); nullptr when the text holds at most `max_values` values.
  const TextNode* value_past_limit() const {
    return nodes_.size() > 1 && nodes_.size() - 1 > max_values_ ? &nodes_.back() : nullptr;
  }

  // The first syntax error, if any. The whole text must then be rejected.
  const std::optional<TextSyntaxError>& syntax_error() const {
    return syntax_error_;
  }

  // The values the tree holds (see Parse); nodes()[0] is the root when the
  // text is not empty.
  const std::vector<TextNode>& nodes() const { return nodes_; }
  const TextNode* root() const { return nodes_.empty() ? nullptr : &nodes_[0]; }

  // The source text of `node`'s value, e.g. `0600` or `"motd"`.
  absl::string_view SourceOf(const TextNode& node) const;

  // The innermost value whose field name or value contains `offset`, or
  // nullptr when `offset` lies outside the root value.
  const TextNode* NodeAt(size_t offset) const;

  // The field path of `node`, e.g. "capabilities[1].file.access"; "" for
  // the root.
  std::string PathOf(const TextNode& node) const;

  // The field path of NodeAt(offset); "" when none.
  std::string PathAt(size_t offset) const;

  // The value at `path` (syntax as PathOf returns), or nullptr. A field
  // given twice resolves to its last occurrence, as in TextCodec.
  const TextNode* Find(absl::string_view path) const;

  // Byte offset of the value at `path`; when the path is not in the text
  // (a field left out), the offset of its deepest ancestor that is, so an
  // error about a missing field points at the struct that lacks it.
  //
  // Find and OffsetOf scan every child of each struct on the path (the
  // last of a repeated field wins): the cost of a step is the number of
  // fields written in that struct. ParsePolicy bounds it by walking paths
  // only in a tree without repeated fields, whose every field is one of
  // the schema's (see policy_parser.h).
  size_t OffsetOf(absl::string_view path) const;

  // How many paths Find and OffsetOf have walked: for tests that check
  // that a path is walked only where needed. Counted atomically, so that
  // the const lookups stay safe to make from several threads.
  size_t paths_walked() const { return paths_walked_.Get(); }

  // The line and column of byte `offset` (clamped to the text's end).
  LineColumn LineColumnAt(size_t offset) const;

  // Byte offset of the first byte of 1-based `line` (clamped).
  size_t LineStart(size_t line) const;

  absl::string_view text() const { return text_; }

 private:
  class Parser;

  TextLocator(absl::string_view text, size_t max_values)
      : text_(text), max_values_(max_values) {}

  absl::string_view text_;
  size_t max_values_;
  std::vector<TextNode> nodes_;
  std::vector<size_t> line_starts_;  // byte offset of each line's start
  std::optional<TextSyntaxError> syntax_error_;

  // A count that const lookups add to, copied with the locator (std::atomic
  // alone is neither copyable nor movable). Relaxed: it orders nothing.
  class WalkCount {
   public:
    WalkCount() = default;
    WalkCount(const WalkCount& other) : count_(other.Get()) {}
    WalkCount& operator=(const WalkCount& other) {
      count_.store(other.Get(), std::memory_order_relaxed);
      return *this;
    }
    void Add() { count_.fetch_add(1, std::memory_order_relaxed); }
    size_t Get() const { return count_.load(std::memory_order_relaxed); }

   private:
    std::atomic<size_t> count_{0};
  };
  mutable WalkCount paths_walked_;
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_TEXT_LOCATOR_H_
