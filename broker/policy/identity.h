// Identity: a connected client as the broker sees it.
//
// The broker fills it from SO_PEERCRED / SO_PEERPIDFD and /proc/<pid>/exe of
// the pidfd-verified process; the policy decides on it. A plain value type:
// it holds no fd and no reference to the process.
#ifndef CAPBROKER_BROKER_POLICY_IDENTITY_H_
#define CAPBROKER_BROKER_POLICY_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace capbroker {

struct Identity {
  uint32_t uid = 0;
  uint32_t gid = 0;  // the primary gid only; supplementary groups never match
  pid_t pid = 0;     // for messages and logs; never decide on a pid alone
  std::string exe;   // absolute path of the executable; empty if unknown
  // The hosted service this is, known by construction: the broker made the
  // connection when it launched the service. Empty for every client that
  // came through the socket. A service matches no principal's uid/gid/exe
  // rules: its authority is its own ServiceSpec.
  std::string service;
};

}  // namespace capbroker

#endif  // CAPBROKER_BROKER_POLICY_IDENTITY_H_
