// Limits of the capbroker wire protocol, shared by clients, services and the
// broker. Each is checked before anything is allocated for a message.
#ifndef CAPBROKER_SDK_WIRE_LIMITS_H_
#define CAPBROKER_SDK_WIRE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace capbroker::wire {

// The largest datagram a peer may send: one Cap'n Proto message, segment
// table included. Requests are far smaller. The replies that grow with
// the policy, `list` and `services`, come in pages, each counted to fit
// (broker/server/reply_pages.h).
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

// The most fds one datagram may carry. The kernel allows 253 (SCM_MAX_FD);
// capbroker needs a handful. The receive control buffer is sized for this
// many, so a datagram with more arrives with MSG_CTRUNC and the kernel closes
// the excess.
inline constexpr size_t kMaxFdsPerMessage = 16;

// The most segments a received message may have. Our builders produce one
// segment for any message under kMaxMessageBytes; a few more are tolerated.
inline constexpr uint32_t kMaxSegments = 8;

// Cap'n Proto reader limits: a message may be traversed at most this many
// words in total (a multiple of the largest message, so that reading a field
// twice is fine but amplification is bounded), and nest at most this deep.
inline constexpr uint64_t kTraversalLimitWords = 4 * kMaxMessageBytes / 8;
inline constexpr int kNestingLimit = 16;

// Text fields in requests: capability names and paths beneath a directory.
inline constexpr size_t kMaxNameBytes = 64;
inline constexpr size_t kMaxPathBytes = 4095;

// The most entries a list may have, in all its pages: a policy holds at
// most this many capabilities (kMaxCapabilities, broker/policy/list_sizes.h; a
// static_assert there ties the two). A client refuses a longer list.
inline constexpr size_t kMaxListEntries = 4096;

// The most entries a services report may have, in all its pages. A policy
// holds at most 256 services (kMaxServices, broker/policy/list_sizes.h; a
// static_assert there ties the two), and an instance removed from the
// policy is reported besides until it has exited (SIGKILL comes 5 s after
// SIGTERM by default): this leaves room for the services of many reloads
// in a row. A client refuses a longer report.
inline constexpr size_t kMaxServiceEntries = 4096;

// The most bytes of each text of a services report entry (protections,
// missing, lastExit, activation). The broker cuts a longer one, ending it
// "... (truncated; N bytes)": a reason can quote a program's path (up to
// 4095 bytes), and a whole report must come in pages of one datagram each,
// each holding at least one entry. Its log has the reasons whole.
inline constexpr size_t kMaxServiceTextBytes = 4096;

// The most bytes of the last reload error in a status reply. The broker cuts
// a longer one, ending it "... (truncated; N bytes; the broker's standard
// error has it whole)": up to 21 error lines, each quoting a path of up to
// 4095 bytes (escaped, up to four times that), would not fit in one
// datagram.
inline constexpr size_t kMaxStatusTextBytes = 8192;

}  // namespace capbroker::wire

#endif  // CAPBROKER_SDK_WIRE_LIMITS_H_
