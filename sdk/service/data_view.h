// Cap'n Proto Data fields as byte strings, without copying.
#ifndef CAPBROKER_SDK_SERVICE_DATA_VIEW_H_
#define CAPBROKER_SDK_SERVICE_DATA_VIEW_H_

#include "absl/strings/string_view.h"
#include "capnp/blob.h"

namespace capbroker {

// The bytes of `data`, valid as long as the message it belongs to.
inline absl::string_view DataView(capnp::Data::Reader data) {
  return absl::string_view(reinterpret_cast<const char*>(data.begin()), data.size());
}

// `bytes` as a Data reader, for a setter that copies it.
inline capnp::Data::Reader AsData(absl::string_view bytes) {
  return capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(bytes.data()), bytes.size());
}

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_DATA_VIEW_H_
