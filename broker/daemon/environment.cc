#include "broker/daemon/environment.h"

#include <cstdio>
#include <tuple>

#include "sdk/base/status_macros.h"

namespace capbroker::daemon {

absl::StatusOr<peer::UnmappedIds> ReadUnmappedPeerIds() {
  CB_ASSIGN_OR_RETURN(peer::UnmappedIds unmapped, peer::ReadUnmappedIds());
  for (auto [kind, id, holders] : {std::tuple{"uid", unmapped.uid, "users"},
                                   std::tuple{"gid", unmapped.gid, "groups"}}) {
    if (!id.has_value()) continue;
    std::fprintf(stderr,
                 "capbrokerd: note: this user namespace does not map the overflow %s %u, "
                 "which all the %s it does not map read as: clients with it cannot be told "
                 "apart, and are refused. Run the broker in the initial user namespace, or "
                 "map those %s\n",
                 kind, *id, holders, holders);
  }
  return unmapped;
}

}  // namespace capbroker::daemon
