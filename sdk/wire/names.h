// The schema's names for Access and Kind values, for messages, the audit log
// and capctl output: one spelling everywhere, matching what a policy file
// says.
#ifndef CAPBROKER_SDK_WIRE_NAMES_H_
#define CAPBROKER_SDK_WIRE_NAMES_H_

#include "schemas/broker.capnp.h"

namespace capbroker {

// "read", "write", "readWrite", "append", "unspecified"; "unknown" for a
// value the schema does not know.
const char* AccessName(schema::Access access);

// Whether `access` names an access an fd can have: read, write, readWrite
// or append; not unspecified, nor a value the schema does not know.
bool IsConcreteAccess(schema::Access access);

// "file", "directory", "memory"; "unknown" otherwise.
const char* KindName(schema::Kind kind);

// "stopped", "running", ...: the spelling of the schema's enumerants.
const char* ServiceStateName(schema::ServiceState state);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_WIRE_NAMES_H_
