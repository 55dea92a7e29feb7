#include "broker/policy/codec_error.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "broker/policy/checks.h"
#include "broker/policy/excerpt.h"
#include "broker/policy/schema_path.h"
#include "broker/policy/spelling.h"
#include "schemas/policy.capnp.h"

namespace capbroker {
namespace {

// The "file" name TextCodec gives its own located errors; anything else was
// thrown by a KJ_REQUIRE inside Cap'n Proto and carries no text position.
constexpr absl::string_view kCodecFile = "(capnp text input)";

absl::string_view View(kj::StringPtr s) { return absl::string_view(s.cStr(), s.size()); }

std::string DescribeValue(const TextLocator& locator, const TextNode& node) {
  absl::string_view source = locator.SourceOf(node);
  switch (node.kind) {
    case TextValueKind::kStruct: return "a struct ( ... )";
    case TextValueKind::kList: return "a list [ ... ]";
    case TextValueKind::kString: return absl::StrCat("the string ", Excerpt(source));
    case TextValueKind::kInteger:
    case TextValueKind::kFloat: return absl::StrCat("the number ", Excerpt(source));
    case TextValueKind::kIdentifier: return absl::StrCat("the name ", Quoted(source));
  }
  return "a value";
}

template <typename T>
std::string WholeNumberRange() {
  return absl::StrCat("a whole number from ", std::numeric_limits<T>::min(), " to ",
                      std::numeric_limits<T>::max());
}

// What a value of `type` looks like in the text format.
std::string ExpectedValue(capnp::Type type) {
  switch (type.which()) {
    case capnp::schema::Type::VOID: return "void";
    case capnp::schema::Type::BOOL: return "true or false";
    case capnp::schema::Type::INT8: return WholeNumberRange<int8_t>();
    case capnp::schema::Type::INT16: return WholeNumberRange<int16_t>();
    case capnp::schema::Type::INT32: return WholeNumberRange<int32_t>();
    case capnp::schema::Type::INT64: return WholeNumberRange<int64_t>();
    case capnp::schema::Type::UINT8: return WholeNumberRange<uint8_t>();
    case capnp::schema::Type::UINT16: return WholeNumberRange<uint16_t>();
    case capnp::schema::Type::UINT32: return WholeNumberRange<uint32_t>();
    case capnp::schema::Type::UINT64: return WholeNumberRange<uint64_t>();
    case capnp::schema::Type::FLOAT32:
    case capnp::schema::Type::FLOAT64: return "a number";
    case capnp::schema::Type::TEXT: return "a string in double quotes, e.g. \"motd\"";
    case capnp::schema::Type::LIST:
      return absl::StrCat("a list in brackets [ x, y, ... ] whose elements are ",
                          ExpectedValue(type.asList().getElementType()));
    case capnp::schema::Type::ENUM:
      return absl::StrCat("one of ",
                          absl::StrJoin(ChoosableEnumerantNames(type.asEnum()), ", "));
    case capnp::schema::Type::STRUCT:
      return absl::StrCat("a ", TypeName(type),
                          " in parentheses ( field = value, ... ) with fields ",
                          absl::StrJoin(WritableFieldNames(type.asStruct()), ", "));
    default: return TypeName(type);
  }
}

// Whether `node` is a uid or gid: Match.uid and .gid, Service.user and
// .group. They are Int64 only so that the schema can say "left out" (-1);
// the ids they take are 0 to kMaxPolicyId, and that is the range to name.
bool IsIdField(const TextLocator& locator, capnp::StructSchema root, const TextNode& node) {
  if (node.parent < 0 || node.field.empty()) return false;
  std::optional<capnp::Type> parent =
      TypeAtPath(root, locator.PathOf(locator.nodes()[node.parent]));
  if (!parent.has_value() || !parent->isStruct()) return false;
  uint64_t id = parent->asStruct().getProto().getId();
  if (id == capnp::typeId<policy::Match>()) return node.field == "uid" || node.field == "gid";
  if (id == capnp::typeId<policy::Service>()) {
    return node.field == "user" || node.field == "group";
  }
  return false;
}

// What a value of `type` looks like, for the value `node`.
std::string ExpectedValueAt(const TextLocator& locator, capnp::StructSchema root,
                            const TextNode& node, capnp::Type type) {
  if (IsIdField(locator, root, node)) {
    return absl::StrCat("a whole number from 0 to ", kMaxPolicyId, " (a ",
                        node.field == "uid" || node.field == "user" ? "uid" : "gid",
                        "; leave the field out for the default)");
  }
  return ExpectedValue(type);
}

// "field 'access' (capabilities[0].file.access)", or "'grants[1]'" for a list
// element.
std::string Subject(const TextLocator& locator, const TextNode& node) {
  std::string path = locator.PathOf(node);
  if (node.field.empty()) return absl::StrCat("'", path, "'");
  if (path == node.field) return absl::StrCat("field '", node.field, "'");
  return absl::StrCat("field '", node.field, "' (", path, ")");
}

// Whether TextCodec accepts the bare name `name` as a value of `type`.
bool IdentifierFits(capnp::Type type, absl::string_view name) {
  switch (type.which()) {
    case capnp::schema::Type::VOID: return name == "void";
    case capnp::schema::Type::BOOL: return name == "true" || name == "false";
    case capnp::schema::Type::FLOAT32:
    case capnp::schema::Type::FLOAT64: return name == "inf" || name == "nan";
    case capnp::schema::Type::ENUM:
      for (const std::string& value : EnumerantNames(type.asEnum())) {
        if (value == name) return true;
      }
      return false;
    default: return false;
  }
}

// TextCodec only says "External constants not allowed." for a bare name it
// cannot use; find the first such name (TextCodec stops at the first) and
// explain it.
std::optional<LocatedMessage> ExplainInvalidIdentifier(const TextLocator& locator,
                                                       capnp::StructSchema root) {
  for (const TextNode& node : locator.nodes()) {
    if (node.kind != TextValueKind::kIdentifier) continue;
    std::optional<capnp::Type> type = TypeAtPath(root, locator.PathOf(node));
    absl::string_view name = locator.SourceOf(node);
    if (!type.has_value() || IdentifierFits(*type, name)) continue;
    if (type->isEnum()) {
      std::vector<std::string> values = ChoosableEnumerantNames(type->asEnum());
      return LocatedMessage{
          node.begin,
          absl::StrCat("unknown value ", Quoted(name), " for ", Subject(locator, node),
                       "; valid values: ", absl::StrJoin(values, ", "),
                       DidYouMean(name, values))};
    }
    std::string hint;
    if (type->which() == capnp::schema::Type::TEXT) {
      hint = absl::StrCat(" (a string needs double quotes: \"", Excerpt(name), "\")");
    }
    return LocatedMessage{
        node.begin, absl::StrCat(Subject(locator, node), " must be ",
                                 ExpectedValueAt(locator, root, node, *type), "; found ",
                                 DescribeValue(locator, node), hint)};
  }
  return std::nullopt;
}

// A TextCodec error with its position: "A-B: message", A and B counted from
// the start of the exception's line (0-based on line 1, 1-based after: the
// codec counts from the preceding '\n').
struct CodecPosition {
  size_t offset;
  absl::string_view message;
};

std::optional<CodecPosition> ParseCodecPosition(const kj::Exception& exception,
                                                const TextLocator& locator) {
  if (View(exception.getFile()) != kCodecFile) return std::nullopt;
  absl::string_view description = View(exception.getDescription());
  size_t dash = description.find('-');
  size_t colon = description.find(": ");
  size_t start = 0;
  if (dash == absl::string_view::npos || colon == absl::string_view::npos ||
      dash > colon || !absl::SimpleAtoi(description.substr(0, dash), &start)) {
    return std::nullopt;
  }
  size_t line = exception.getLine() > 0 ? exception.getLine() : 1;
  size_t offset = line == 1 ? start : locator.LineStart(line) - 1 + start;
  offset = std::min(offset, locator.text().size());
  return CodecPosition{offset, description.substr(colon + 2)};
}

LocatedMessage ExplainUnknownField(const TextLocator& locator, capnp::StructSchema root,
                                   size_t offset, absl::string_view message) {
  // The offset is that of the field name; its node's parent is the struct.
  const TextNode* field = locator.NodeAt(offset);
  if (field == nullptr || field->field.empty() || field->parent < 0) {
    return {offset, std::string(message)};
  }
  const TextNode& parent = locator.nodes()[field->parent];
  std::string parent_path = locator.PathOf(parent);
  std::optional<capnp::Type> type = TypeAtPath(root, parent_path);
  if (!type.has_value() || !type->isStruct()) return {offset, std::string(message)};
  std::vector<std::string> names = WritableFieldNames(type->asStruct());
  return {offset,
          absl::StrCat("unknown field ", Quoted(field->field), " in ", TypeName(*type),
                       parent_path.empty() ? "" : absl::StrCat(" (", parent_path, ")"),
                       "; valid fields: ", absl::StrJoin(names, ", "),
                       DidYouMean(field->field, names))};
}

LocatedMessage ExplainValueError(const TextLocator& locator, capnp::StructSchema root,
                                 size_t offset, absl::string_view message,
                                 bool out_of_range) {
  const TextNode* node = locator.NodeAt(offset);
  if (node == nullptr) return {offset, std::string(message)};
  std::optional<capnp::Type> type = TypeAtPath(root, locator.PathOf(*node));
  if (!type.has_value()) return {offset, std::string(message)};
  if (out_of_range) {
    return {node->begin, absl::StrCat(Subject(locator, *node), " is out of range: ",
                                      Excerpt(locator.SourceOf(*node)), " is not ",
                                      ExpectedValueAt(locator, root, *node, *type))};
  }
  return {node->begin, absl::StrCat(Subject(locator, *node), " must be ",
                                    ExpectedValueAt(locator, root, *node, *type), "; found ",
                                    DescribeValue(locator, *node))};
}

}  // namespace

LocatedMessage ExplainCodecError(const kj::Exception& exception,
                                 const TextLocator& locator,
                                 capnp::StructSchema root) {
  absl::string_view description = View(exception.getDescription());
  std::optional<CodecPosition> position = ParseCodecPosition(exception, locator);
  if (!position.has_value()) {
    if (absl::StrContains(description, "External constants not allowed")) {
      std::optional<LocatedMessage> explained = ExplainInvalidIdentifier(locator, root);
      if (explained.has_value()) return *explained;
    }
    return {0, absl::StrCat("cannot read the policy: ", description)};
  }
  absl::string_view message = position->message;
  if (absl::StartsWith(message, "Struct has no field named")) {
    return ExplainUnknownField(locator, root, position->offset, message);
  }
  if (absl::StartsWith(message, "Type mismatch")) {
    return ExplainValueError(locator, root, position->offset, message, false);
  }
  if (absl::StartsWith(message, "Integer value out of range") ||
      absl::StartsWith(message, "Integer is too big to be negative")) {
    return ExplainValueError(locator, root, position->offset, message, true);
  }
  return {position->offset, std::string(message)};
}

}  // namespace capbroker
