// Checks what TextCodec silently accepts: a field given twice in one struct
// (TextCodec keeps the last, so a reviewer reading the first is misled), and
// two members of one union (TextCodec keeps the last, so a capability written
// with both `file` and `memory` would quietly become memory).
#ifndef CAPBROKER_BROKER_POLICY_FIELD_UNIQUENESS_H_
#define CAPBROKER_BROKER_POLICY_FIELD_UNIQUENESS_H_

#include "broker/policy/diagnostics.h"
#include "broker/policy/text_locator.h"
#include "capnp/schema.h"

namespace capbroker {

// Adds an error to `diagnostics` for each repeated field and each second
// union member in the structs of `locator`'s tree, whose root is a `root`.
void CheckFieldUniqueness(const TextLocator& locator, capnp::StructSchema root,
                          Diagnostics& diagnostics);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_FIELD_UNIQUENESS_H_
