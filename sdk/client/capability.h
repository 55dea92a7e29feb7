// Capability: an fd the broker granted, with what the broker said it is.
#ifndef CAPBROKER_SDK_CLIENT_CAPABILITY_H_
#define CAPBROKER_SDK_CLIENT_CAPABILITY_H_

#include <cstdint>
#include <string>

#include "schemas/broker.capnp.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/names.h"  // AccessName, KindName: part of this API

namespace capbroker {

// Move-only: the fd has one owner. Holding it is the permission.
struct Capability {
  UniqueFd fd;
  std::string name;      // the capability's name in the policy
  schema::Kind kind = schema::Kind::FILE;
  schema::Access access = schema::Access::UNSPECIFIED;
  uint64_t size = 0;     // memory: bytes
  std::string path;      // open beneath: the path opened
};

}  // namespace capbroker

#endif  // CAPBROKER_SDK_CLIENT_CAPABILITY_H_
