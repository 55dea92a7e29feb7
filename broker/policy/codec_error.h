// Explains capnp::TextCodec errors in terms an admin can act on.
//
// TextCodec reports "31-34: Struct has no field named 'pth'." with the
// offsets relative to the start of the line in the exception's line number,
// and an unknown enum value as "External constants not allowed." with no
// position at all. ExplainCodecError turns these into an absolute byte offset
// and a message that names the field path, the expected type, and the valid
// field names or enum values, with a spelling suggestion where one fits.
#ifndef CAPBROKER_BROKER_POLICY_CODEC_ERROR_H_
#define CAPBROKER_BROKER_POLICY_CODEC_ERROR_H_

#include <cstddef>
#include <string>

#include "broker/policy/text_locator.h"
#include "capnp/schema.h"
#include "kj/exception.h"

namespace capbroker {

// A message and the byte offset it is about.
struct LocatedMessage {
  size_t offset = 0;
  std::string message;
};

// Explains `exception`, thrown by TextCodec::decode of `locator.text()` into
// a struct of type `root`. `locator` must have parsed without syntax error.
LocatedMessage ExplainCodecError(const kj::Exception& exception,
                                 const TextLocator& locator,
                                 capnp::StructSchema root);

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_CODEC_ERROR_H_
