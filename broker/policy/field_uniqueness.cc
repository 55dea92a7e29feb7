#include "broker/policy/field_uniqueness.h"

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/schema_path.h"

namespace capbroker {

void CheckFieldUniqueness(const TextLocator& locator, capnp::StructSchema root,
                          Diagnostics& diagnostics) {
  for (const TextNode& node : locator.nodes()) {
    if (node.kind != TextValueKind::kStruct) continue;
    std::string path = locator.PathOf(node);
    std::optional<capnp::Type> type = TypeAtPath(root, path);
    if (!type.has_value() || !type->isStruct()) continue;
    std::string where =
        absl::StrCat(TypeName(*type), path.empty() ? "" : absl::StrCat(" (", path, ")"));

    absl::flat_hash_map<absl::string_view, const TextNode*> seen;
    const TextNode* union_member = nullptr;
    for (size_t child_index : node.children) {
      const TextNode& child = locator.nodes()[child_index];
      auto [it, inserted] = seen.emplace(child.field, &child);
      if (!inserted) {
        // Where the first one is costs a scan of its line: skipped for a
        // message nobody sees (repeats on one long line were quadratic).
        std::string message;
        if (!diagnostics.full()) {
          LineColumn first = locator.LineColumnAt(it->second->field_offset);
          message = absl::StrCat("field '", child.field, "' is given twice in ", where,
                                 " (first at line ", first.line, ", column ", first.column,
                                 "); give it once");
        }
        diagnostics.AddAt(child.field_offset, message);
        continue;
      }
      std::optional<capnp::StructSchema::Field> field =
          FindField(type->asStruct(), child.field);
      if (!field.has_value() || field->getProto().getDiscriminantValue() ==
                                    capnp::schema::Field::NO_DISCRIMINANT) {
        continue;
      }
      if (union_member != nullptr) {
        diagnostics.AddAt(child.field_offset,
                          absl::StrCat("'", union_member->field, "' and '", child.field,
                                       "' are alternatives in ", where,
                                       ": give only one"));
        continue;
      }
      union_member = &child;
    }
  }
}

}  // namespace capbroker
