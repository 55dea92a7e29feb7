// Cap'n Proto reflection over field paths: which struct, enum or scalar type
// a path such as "capabilities[1].file.access" names in a schema.
//
// The policy parser uses it to turn a byte offset (via TextLocator's path)
// into "the field 'access', an Access enum with values read, write, ...", so
// that error messages can list valid field names and enum values without the
// parser hard-coding the schema. Pure: reads compiled-in schemas only.
#ifndef CAPBROKER_BROKER_POLICY_SCHEMA_PATH_H_
#define CAPBROKER_BROKER_POLICY_SCHEMA_PATH_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "capnp/schema.h"

namespace capbroker {

// The type of the value at `path` below a value of type `root`; nullopt when
// a step names no field or indexes a non-list. "" is `root` itself.
std::optional<capnp::Type> TypeAtPath(capnp::StructSchema root,
                                      absl::string_view path);

// The field of `schema` named `name`, if any.
std::optional<capnp::StructSchema::Field> FindField(capnp::StructSchema schema,
                                                    absl::string_view name);

// The names an author may write in `schema`, in declaration order. Void
// fields are left out: in a union they only mean "none of the others" (the
// policy's `unset`), and suggesting them would invite an error.
std::vector<std::string> WritableFieldNames(capnp::StructSchema schema);

// The names of `schema`'s enumerants, in declaration order.
std::vector<std::string> EnumerantNames(capnp::EnumSchema schema);

// The enumerant names an author may choose in a policy: EnumerantNames
// without `unspecified`, which in broker.capnp means "not given" (a request
// asking for the grant itself) and is never a valid choice in a policy.
std::vector<std::string> ChoosableEnumerantNames(capnp::EnumSchema schema);

// A short human name of `type`: "Text", "UInt32", "List(Text)", or the short
// name of a struct or enum ("FileCapability", "Access").
std::string TypeName(capnp::Type type);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_SCHEMA_PATH_H_
