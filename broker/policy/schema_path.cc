#include "broker/policy/schema_path.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "broker/policy/text_locator.h"

namespace capbroker {

std::optional<capnp::StructSchema::Field> FindField(capnp::StructSchema schema,
                                                    absl::string_view name) {
  for (capnp::StructSchema::Field field : schema.getFields()) {
    kj::StringPtr field_name = field.getProto().getName();
    if (absl::string_view(field_name.cStr(), field_name.size()) == name) {
      return field;
    }
  }
  return std::nullopt;
}

std::optional<capnp::Type> TypeAtPath(capnp::StructSchema root,
                                      absl::string_view path) {
  std::optional<std::vector<PathStep>> steps = SplitPath(path);
  if (!steps.has_value()) return std::nullopt;
  capnp::Type type = root;
  for (const PathStep& step : *steps) {
    if (step.index.has_value()) {
      if (!type.isList()) return std::nullopt;
      type = type.asList().getElementType();
      continue;
    }
    if (!type.isStruct()) return std::nullopt;
    std::optional<capnp::StructSchema::Field> field =
        FindField(type.asStruct(), step.field);
    if (!field.has_value()) return std::nullopt;
    type = field->getType();
  }
  return type;
}

std::vector<std::string> WritableFieldNames(capnp::StructSchema schema) {
  std::vector<std::string> names;
  for (capnp::StructSchema::Field field : schema.getFields()) {
    if (field.getType().isVoid()) continue;
    names.emplace_back(field.getProto().getName().cStr());
  }
  return names;
}

std::vector<std::string> EnumerantNames(capnp::EnumSchema schema) {
  std::vector<std::string> names;
  for (capnp::EnumSchema::Enumerant enumerant : schema.getEnumerants()) {
    names.emplace_back(enumerant.getProto().getName().cStr());
  }
  return names;
}

std::vector<std::string> ChoosableEnumerantNames(capnp::EnumSchema schema) {
  std::vector<std::string> names = EnumerantNames(schema);
  names.erase(std::remove(names.begin(), names.end(), "unspecified"), names.end());
  return names;
}

std::string TypeName(capnp::Type type) {
  switch (type.which()) {
    case capnp::schema::Type::VOID: return "Void";
    case capnp::schema::Type::BOOL: return "Bool";
    case capnp::schema::Type::INT8: return "Int8";
    case capnp::schema::Type::INT16: return "Int16";
    case capnp::schema::Type::INT32: return "Int32";
    case capnp::schema::Type::INT64: return "Int64";
    case capnp::schema::Type::UINT8: return "UInt8";
    case capnp::schema::Type::UINT16: return "UInt16";
    case capnp::schema::Type::UINT32: return "UInt32";
    case capnp::schema::Type::UINT64: return "UInt64";
    case capnp::schema::Type::FLOAT32: return "Float32";
    case capnp::schema::Type::FLOAT64: return "Float64";
    case capnp::schema::Type::TEXT: return "Text";
    case capnp::schema::Type::DATA: return "Data";
    case capnp::schema::Type::LIST:
      return absl::StrCat("List(", TypeName(type.asList().getElementType()), ")");
    case capnp::schema::Type::ENUM:
      return type.asEnum().getShortDisplayName().cStr();
    case capnp::schema::Type::STRUCT:
      return type.asStruct().getShortDisplayName().cStr();
    case capnp::schema::Type::INTERFACE:
      return type.asInterface().getShortDisplayName().cStr();
    case capnp::schema::Type::ANY_POINTER:
      return "AnyPointer";
  }
  return "?";
}

}  // namespace capbroker
