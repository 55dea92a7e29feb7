#include "sdk/wire/names.h"

namespace capbroker {

const char* KindName(schema::Kind kind) {
  switch (kind) {
    case schema::Kind::FILE: return "file";
    case schema::Kind::DIRECTORY: return "directory";
    case schema::Kind::MEMORY: return "memory";
    case schema::Kind::CONNECTION: return "connection";
  }
  return "unknown";
}

const char* ServiceStateName(schema::ServiceState state) {
  switch (state) {
    case schema::ServiceState::STOPPED: return "stopped";
    case schema::ServiceState::STARTING: return "starting";
    case schema::ServiceState::RUNNING: return "running";
    case schema::ServiceState::BACKOFF: return "backoff";
    case schema::ServiceState::FAILED: return "failed";
    case schema::ServiceState::STOPPING: return "stopping";
  }
  return "unknown";
}

const char* AccessName(schema::Access access) {
  switch (access) {
    case schema::Access::READ: return "read";
    case schema::Access::WRITE: return "write";
    case schema::Access::READ_WRITE: return "readWrite";
    case schema::Access::APPEND: return "append";
    case schema::Access::UNSPECIFIED: return "unspecified";
  }
  return "unknown";
}

bool IsConcreteAccess(schema::Access access) {
  switch (access) {
    case schema::Access::READ:
    case schema::Access::WRITE:
    case schema::Access::READ_WRITE:
    case schema::Access::APPEND:
      return true;
    case schema::Access::UNSPECIFIED:
      break;
  }
  return false;
}

}  // namespace capbroker
