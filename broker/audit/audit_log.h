// AuditLog: one JSON line for every grant and every denial.
//
// Lines are buffered and written by Flush(), which the broker's event loop
// calls before it sends the replies of a loop turn, so a burst of requests
// costs one write(2) and no line waits longer than one loop iteration. A
// line that cannot be written is counted and reported on stderr, never
// silently lost.
//
// Fail closed for grants: each line has a sequence number, and the loop
// learns which lines a failed flush lost (TakeLostLines) before it sends
// anything; a grant whose line was lost is not delivered but answered with
// an error (see broker_loop.h). A grant not on record must not exist. Denials
// go out either way: they hand out nothing. The broker keeps serving
// everything else, and grants resume as soon as lines can be written again
// (stopping altogether because the log disk is full would turn a full disk
// into a denial of service for every client, denials and status included).
//
// Whole lines: a short write is continued until everything is written or a
// write fails. A write can fail after part of a line went out (a full disk
// takes what fits, then says ENOSPC); the fragment stays in the file, and
// the next flush first ends it with a newline, so that it cannot run into
// the next line and corrupt it. A fragment left by a broker that died
// mid-write is ended the same way when the file is opened. Readers skip a
// line that is not valid JSON; the lines lost are counted.
//
// Writes block. The audit fd is expected to be a regular file (--audit-log)
// or a pipe or socket to a log collector (stderr under systemd). A slow
// reader at the other end of a pipe slows the broker down, since the single
// event loop waits for the line to be taken; a reader that stops reading
// stops the broker. Decided so: audit lines are never skipped to keep
// serving, and a grant must be on record before it goes out (see
// broker_loop.h). If the fd was left non-blocking by whoever started the
// broker (O_NONBLOCK belongs to the open file description, which the broker
// shares and must not change), EAGAIN is waited out with poll(2), to the
// same effect.
//
// Not thread-safe: the broker's single event-loop thread owns it.
#ifndef CAPBROKER_BROKER_AUDIT_AUDIT_LOG_H_
#define CAPBROKER_BROKER_AUDIT_AUDIT_LOG_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::audit {

// What one audit line records.
struct AuditEvent {
  // The peer as the broker identified it.
  uint32_t uid = 0;
  uint32_t gid = 0;
  pid_t pid = 0;
  absl::string_view exe;
  // The request: "acquire" or "openBeneath", the capability it named, the
  // access it asked for and, for openBeneath, the path beneath.
  absl::string_view request;
  absl::string_view capability;
  absl::string_view access;
  absl::string_view path;
  // The outcome: granted or not, the principal whose grant allowed it, and
  // the reason (for a denial, the message sent to the client).
  bool granted = false;
  absl::string_view principal;
  absl::string_view reason;
};

class AuditLog {
 public:
  // Logs to `fd` (borrowed; stderr by default).
  explicit AuditLog(int fd = 2);
  // Logs to the file at `path`, opened for append (created 0600).
  static absl::StatusOr<AuditLog> OpenFile(absl::string_view path);

  AuditLog(AuditLog&&) = default;
  AuditLog& operator=(AuditLog&&) = default;

  // Adds one line for `event` at time `now`. Returns its sequence number
  // (1 for the log's first line, then counting up).
  uint64_t Record(const AuditEvent& event, absl::Time now);

  // Writes the buffered lines. Returns how many lines were dropped so far
  // because writing failed.
  uint64_t Flush();

  // The sequence numbers of lines that could not be written since the last
  // call, as ranges of consecutive lines, oldest first; forgets them.
  struct LineRange {
    uint64_t first = 0;
    uint64_t last = 0;
    bool Contains(uint64_t line) const { return line >= first && line <= last; }
  };
  std::vector<LineRange> TakeLostLines() { return std::exchange(lost_lines_, {}); }

  bool has_pending() const { return !buffer_.empty(); }

 private:
  UniqueFd owned_;
  int fd_;
  // The log's last byte is not a newline (a failed write cut a line short):
  // the next flush writes a newline first.
  bool mid_line_ = false;
  std::string buffer_;
  size_t pending_lines_ = 0;
  uint64_t next_line_ = 1;  // the sequence number Record gives next
  std::vector<LineRange> lost_lines_;
  uint64_t dropped_lines_ = 0;
  int64_t cached_second_ = 0;  // the Unix second cached_time_ shows
  std::string cached_time_;    // "YYYY-MM-DDTHH:MM:SS" of cached_second_
};

}  // namespace capbroker::audit

#endif  // CAPBROKER_BROKER_AUDIT_AUDIT_LOG_H_
