// Peers a broker in a user namespace cannot tell apart.
//
// SO_PEERCRED gives the peer's uid and gid as the reader's user namespace
// maps them. An id that namespace does not map reads as the overflow id
// (/proc/sys/kernel/overflowuid and overflowgid, 65534 unless changed):
// every such user alike. So in a namespace whose uid map does not cover
// every uid, a peer reading as the overflow uid may be any of the users the
// namespace does not map, and nothing tells which: a principal with uid
// 65534 would match every one of them, and they would all share one
// per-uid connection quota. That holds whether or not the map also maps
// 65534 itself: rootless podman's `0 1000 1` + `1 100000 65536` includes
// it, and yet every host user it leaves out reads as 65534 all the same,
// indistinguishable from the namespace's own user 65534. The broker
// refuses such a peer at admission (fail closed), the namespace's own
// 65534 too, since it cannot be told apart. The same goes for gids. Only a
// map that covers every id, 0 to 4294967294 (the initial user namespace's
// `0 0 4294967295`, or a namespace mapping the full range in one or more
// ranges), leaves no one unmapped: there the overflow id is one user like
// any other, and nothing is refused.
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
// namespace does not map, when that namespace does not map every uid
// (gid): such a peer cannot be told apart from the namespace's own user
// (group) of that number, nor from others like it. nullopt when the map
// covers every id. The default, nothing unmapped, is the initial user
// namespace's.
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
// inside the namespace, its first id outside, its length) maps every id of
// the namespace, 0 to 4294967294 ((uid_t)-1 is no id), in one range or
// several, in any order. An empty map (none written yet) maps nothing.
// kInvalidArgument, naming `name` (the file) and the line, when `map` is
// not such text: a range of length 0, or past the last id, is refused too,
// and so are more ranges than the kernel takes (340).
absl::StatusOr<bool> IdMapCoversEveryId(absl::string_view map, absl::string_view name);

// Reads the broker's id maps from `files`, and the overflow id of a map
// that does not cover every id: the overflow uid (gid) is in the result
// when the uid (gid) map does not cover every uid (gid). The sysctls are
// read only then: a /proc mounted with subset=pid (systemd's
// ProcSubset=pid) has no /proc/sys, and a broker in the initial user
// namespace does not need it. A map that does not exist is a kernel
// without user namespaces (CONFIG_USER_NS), whose one namespace maps every
// id; so check first that /proc is the broker's (daemon::CheckOwnProcfs).
// An error (a file that cannot be read, or text that is not what the
// kernel writes there) says which file and why: the broker then does not
// start, since it could not tell which peers it can identify. A missing
// sysctl that a partial map needs is kFailedPrecondition, saying why the
// broker needs it and naming subset=pid (ProcSubset=pid) as the likely
// cause.
absl::StatusOr<UnmappedIds> ReadUnmappedIds(const IdFiles& files = IdFiles());

// kFailedPrecondition when the peer `credentials` describe has a uid or
// gid that `unmapped` says no one in particular has, saying why and what
// to do ("its uid 65534 cannot be told apart from users the broker's user
// namespace does not map ..."); else OK.
absl::Status CheckIdsMapped(const Credentials& credentials, const UnmappedIds& unmapped);

}  // namespace capbroker::peer

#endif  // CAPBROKER_BROKER_PEER_UNMAPPED_IDS_H_
