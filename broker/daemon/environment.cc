#include "broker/daemon/environment.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"

namespace capbroker::daemon {
namespace {

// What to do about a /proc that is not the broker's pid namespace's.
constexpr char kMountOwnProc[] =
    "; mount a procfs for the broker's pid namespace, e.g. unshare --pid --fork --mount-proc";

}  // namespace

absl::Status CheckOwnProcfs() {
  const std::string own = absl::StrCat(getpid());
  char self[32];
  ssize_t n = readlink("/proc/self", self, sizeof(self));
  if (n < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read /proc/self (", std::strerror(errno),
        "): the broker needs the procfs of its own pid namespace at /proc to tell which "
        "program a client runs",
        kMountOwnProc));
  }
  const absl::string_view read(self, static_cast<size_t>(n));
  if (read == own) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "/proc is not the procfs of the broker's pid namespace (/proc/self is '", Shown(read),
      "', the broker's pid is ", own,
      "): the broker reads a client's program at /proc/PID, PID as its own pid namespace "
      "numbers the client, and there it would find another process",
      kMountOwnProc));
}

absl::StatusOr<peer::UnmappedIds> ReadUnmappedPeerIds() {
  CB_ASSIGN_OR_RETURN(peer::UnmappedIds unmapped, peer::ReadUnmappedIds());
  for (auto [kind, id, holders] : {std::tuple{"uid", unmapped.uid, "users"},
                                   std::tuple{"gid", unmapped.gid, "groups"}}) {
    if (!id.has_value()) continue;
    std::fprintf(stderr,
                 "capbrokerd: note: this user namespace does not map every %s, and all the "
                 "%s it does not map read as the overflow %s %u: clients with %s %u cannot "
                 "be told apart from them, and are refused (the namespace's own %s %u "
                 "too). Run the broker in the initial user namespace or in one that maps "
                 "every %s\n",
                 kind, holders, kind, *id, kind, *id, kind, *id, kind);
  }
  return unmapped;
}

}  // namespace capbroker::daemon
