// Memory capabilities: sealed memfds.
//
// A memory capability is a memfd of a fixed size, sealed so that no holder
// can grow or shrink it (F_SEAL_GROW, F_SEAL_SHRINK) or change the seals
// (F_SEAL_SEAL). A holder that maps it therefore never faults on a shrunk
// file, the failure mode of shared memory between mutually distrusting
// processes.
#ifndef CAPBROKER_BROKER_CAPS_MEMORY_H_
#define CAPBROKER_BROKER_CAPS_MEMORY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::caps {

// A new sealed memfd of `size` bytes, zero-filled, named "capbroker:<name>"
// (the name shows in /proc/PID/fd of holders; it grants nothing).
absl::StatusOr<UniqueFd> CreateSealedMemfd(absl::string_view name,
                                           uint64_t size);

// A new read-only open file description of the memfd `fd` (borrowed), made
// through /proc/self/fd: its holder cannot write it or map it writable,
// whatever other holders of the memfd may do. Memfds are mode 0600, so a
// holder of another uid cannot reopen it read-write either. A holder of the
// broker's own uid (or root) can, and can fchmod the memfd (it is the
// owner) so that every uid can: read-only memory is a boundary only against
// other uids, and no seal helps (F_SEAL_WRITE and F_SEAL_FUTURE_WRITE
// hold for every fd of the memfd, the read-write grantees' too).
absl::StatusOr<UniqueFd> ReopenReadOnly(int fd);

}  // namespace capbroker::caps

#endif  // CAPBROKER_BROKER_CAPS_MEMORY_H_
