// Peers a broker in a user namespace cannot tell apart.
//
// SO_PEERCRED gives the peer's uid and gid as the reader's user namespace
// maps them. An id that namespace does not map reads as the overflow id
// (/proc/sys/kernel/overflowuid and overflowgid, 65534 unless changed):
// every such user alike. So in a namespace that does not map the overflow
// id itself (`unshare -U --map-root-user` maps one uid), that id names
// nobody in particular: a principal with uid 65534 would match every
// unmapped host user, and they would all share one per-uid connection
// quota. The broker refuses such a peer at admission (fail closed). Where
// the overflow id is mapped (the initial user namespace, where it is the
// real `nobody`, or a namespace mapping the full range) it is one user
// like any other, and nothing is refused.
//
// The facts are read once, at start (ReadUnmappedIds): the maps of a
// namespace are written once and never change, and the sysctls are the
// administrator's, read as the broker starts.
#ifndef CAPBROKER_BROKER_PEER_UNMAPPED_IDS_H_
#define CAPBROKER_BROKER_PEER_UNMAPPED_IDS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "broker/peer/peer_identity.h"

namespace capbroker::peer {

// The ids SO_PEERCRED gives a peer whose uid (gid) the broker's user
// namespace does not map, when that namespace maps no user (group) with
// that number; nullopt when it does. The default, nothing unmapped, is the
// initial user namespace's (its map covers every id).
struct UnmappedIds {
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
};

// Where ReadUnmappedIds looks; tests pass files of their own.
struct IdFiles {
  const char* uid_map = "/proc/self/uid_map";
  const char* gid_map = "/proc/self/gid_map";
  const char* overflow_uid = "/proc/sys/kernel/overflowuid";
  const char* overflow_gid = "/proc/sys/kernel/overflowgid";
};

// Whether the id map `map` (the text of /proc/PID/uid_map or gid_map: one
// range a line, three decimal numbers separated by blanks: its first id
// inside the namespace, its first id outside, its length) maps the id `id`
// of the namespace. An empty map (none written yet) maps nothing.
// kInvalidArgument, naming `name` (the file) and the line, when `map` is
// not such text: a range of length 0, or past the last id, is refused too.
absl::StatusOr<bool> IdMapHas(absl::string_view map, uint32_t id, absl::string_view name);

// Reads the broker's id maps and the overflow ids from `files`: the
// overflow uid (gid) is in the result when the uid (gid) map does not map
// it. An error (a file that cannot be read, or text that is not what the
// kernel writes there) says which file and why: the broker then does not
// start, since it could not tell which peers it can identify.
absl::StatusOr<UnmappedIds> ReadUnmappedIds(const IdFiles& files = IdFiles());

// kFailedPrecondition when the peer `credentials` describe has a uid or
// gid that `unmapped` says no one in particular has, saying why and what
// to do ("its uid is not mapped into the broker's user namespace ...");
// else OK.
absl::Status CheckIdsMapped(const Credentials& credentials, const UnmappedIds& unmapped);

}  // namespace capbroker::peer

#endif  // CAPBROKER_BROKER_PEER_UNMAPPED_IDS_H_
