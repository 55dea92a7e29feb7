// AuditLog: one JSON line for every grant and every denial.
//
// Lines are buffered and written by Flush(), which the broker's event loop
// calls before it sends the replies of a loop turn, so a burst of requests
// costs one write(2) and no line waits longer than one loop iteration. A
// line that cannot be written is counted and reported on stderr, never
// silently lost. A client can make a flush fail per request while the disk
// is full, so the stderr lines about failed writes are rationed (one a
// second, LogLimiter); each gives the count of lines lost in all, the next
// one allowed says how many failed writes went unreported, and FlushAll
// (the broker stopping) says so for any still unreported.
//
// Fail closed for grants: each line has a sequence number, and the loop
// learns which lines a failed flush lost (TakeLostLines) before it sends
// anything; a grant whose line was lost is not delivered but answered with
// an error (see broker_loop.h). A grant not on record must not exist. Denials
// go out either way: they hand out nothing. The broker keeps serving
// everything else, and grants resume as soon as lines can be written again
// (stopping altogether because the log disk is full would turn a full disk
// into a denial of service for every client, denials and status included).
// But a log on stderr whose reader is gone (EPIPE) can never be written
// again, nor reopened: reader_gone() says so, and the broker then stops
// (see broker_loop.h), for its supervisor to restart it with a log.

//
// Whole lines: a short write is continued until everything is written or a
// write fails. A write can fail after part of a line went out (a full disk
// takes what fits, then says ENOSPC); the fragment stays in the file, and
// the next flush first ends it with a newline, so that it cannot run into
// the next line and corrupt it. A fragment left by a broker that died
// mid-write is ended the same way when the file is opened, and the old
// file's at a Reopen. Readers skip a line that is not valid JSON; the lines
// lost are counted. A line cut only of its newline is whole, and ended the
// same way: it counts as written, its grant delivered.
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
// Denials are throttled per uid, so that a client cannot fill the disk by
// asking for what it may not have (grants are never throttled: each one is
// authorized, and must be on record; nor are the denials that complete a
// line on record, AuditEvent::exempt_from_budget). Each uid has a token bucket of
// DenialBudget::burst lines, refilled at per_second lines a second. A
// denial without a token is not written but counted, and one line
//   {"time":...,"event":"denialsSuppressed","peer":{"uid":U},"count":N,...}
// says how many, as soon as the uid's bucket holds a token again: before
// that uid's next denial line, or at a Flush, whichever comes first (the
// loop flushes after every turn with replies, so an idle broker writes it
// with its next activity); the broker's last flush (FlushAll) writes every
// count still waiting. Per uid,
// not per connection: a uid may open thousands of connections. The status
// counters still count every denial. The budget runs on the monotonic clock
// (Instant::steady), lines show the wall clock (Instant::wall): a step of
// the wall clock (an admin, NTP) neither holds the buckets empty (back by
// T: no refill for T) nor fills them at once (forward).
//
// The cost of the budget grows with the uids denied lately, never with all
// the uids ever denied, and a flush does not visit them: the uids with a
// count waiting are kept in the order their counts fall due, so a flush
// looks only at those due (the loop flushes once per connection with
// replies in a turn, and one uid over budget must not make each of those
// flushes walk every bucket). A full bucket with nothing suppressed is the
// same as none, and such buckets are dropped by a sweep at most once per
// refill time (burst / per_second, 20 s by default; at least a second): at
// every denial and every flush, the buckets held are those of the uids
// denied in the last two refill times (40 s), at most. A budget with no
// refill (per_second 0, for tests) keeps its buckets.
//
// A deleted file: a log removed with rm (not renamed, as rotation does)
// leaves the broker appending to a file with no name, whose lines vanish
// when it closes. At most once a second, a flush checks that the open file
// still has a name (st_nlink); if not, it opens the path again, as Reopen
// does (same checks), writes the lines it holds there, and says so once on
// stderr. If the path is refused, the log goes on in the deleted file,
// tries again each second, and TakeReopenAfterDeletion hands the refusal to
// the loop, which shows it in capctl status as a refused SIGHUP's. Reopen
// (SIGHUP) checks too, first: the lines it holds go to the new file, never
// to a deleted one. What the deleted file received is not copied (it may
// end in a fragment, and copying it would write old lines after newer
// ones); the stderr line about the new file says how many lines went to it
// since it was last seen with its name (at the check before, or when it was
// opened), and when that was: those lines are lost with it (some may have
// been written before the rm; the broker cannot tell them apart, and
// everything before them was deleted with the file, by whoever deleted
// it). lines_to_deleted_files() keeps the count, summed over deletions,
// for capctl status.
//
// Not thread-safe: the broker's single event-loop thread owns it.
#ifndef CAPBROKER_BROKER_AUDIT_AUDIT_LOG_H_
#define CAPBROKER_BROKER_AUDIT_AUDIT_LOG_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "sdk/base/log_limiter.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::audit {

// What one audit line records.
// The peer's part of an audit line, `{"uid":..,"gid":..,"pid":..,"exe":".."}`,
// as the broker identified it. A connection's peer does not change, so the
// broker renders it once per connection rather than once per line.
std::string RenderPeer(uint32_t uid, uint32_t gid, pid_t pid, absl::string_view exe);

// What an open beneath asked for besides opening, and what came of it.
// Each field goes into the line only when it says something (see Record).
struct OpenOptions {
  bool create = false;    // O_CREAT was asked, with `mode`
  uint32_t mode = 0;      // the permission bits of a created file (at most 0777)
  bool truncate = false;  // O_TRUNC was asked
  // For a grant with `create`: this open made the file (the broker tries
  // O_CREAT | O_EXCL first, so it knows), or found it there.
  bool created = false;
};

struct AuditEvent {
  // The peer: its uid (denials are budgeted per uid) and RenderPeer's text.
  uint32_t uid = 0;
  absl::string_view peer = "{}";
  // The request: "acquire" or "openBeneath", the capability it named, the
  // access it asked for and, for openBeneath, the path beneath.
  absl::string_view request;
  absl::string_view capability;
  absl::string_view access;
  absl::string_view path;
  // For a file's open (openBeneath; acquire and start of a file
  // capability): create (with its mode) and truncate, written in the
  // request when the open uses them; for a grant with create, "created"
  // after the decision.
  OpenOptions open;
  // The outcome: granted or not, the principal whose grant allowed it, and
  // the reason (for a denial, the message sent to the client).
  bool granted = false;
  absl::string_view principal;
  absl::string_view reason;
  // A denial written whatever its uid's budget (see "Denials are throttled"
  // above): one that corrects or completes a line already on record, such
  // as a grant not delivered after all, or a refusal the broker made on its
  // own behalf. Only for denials the number of which something other than
  // the client's requests bounds (at most one per grant line, grants being
  // never throttled; or the service host's ration of starts): a client
  // that spent its budget must not be able to hide them, nor make the log
  // grow without bound through them.
  bool exempt_from_budget = false;
};

// When something happens, on the two clocks the log needs (see above).
struct Instant {
  absl::Time wall;        // written in the line (CLOCK_REALTIME)
  absl::Duration steady;  // measures the denial budget (CLOCK_MONOTONIC,
                          // from an arbitrary start)
};
// Now, on both clocks.
Instant InstantNow();

// How many denial lines one uid may cause (see above).
struct DenialBudget {
  int burst = 20;          // lines at once
  double per_second = 1;   // lines a second after that
};

// A file the audit log must never be, such as the policy file or the
// socket's lock file: audit lines appended to it would corrupt it (a policy
// that no longer parses at the next reload or restart).
struct ReservedFile {
  std::string what;  // for the error: "the policy file"
  std::string path;  // followed if a symlink; need not exist
};

class AuditLog {
 public:
  // Logs to `fd` (borrowed; stderr by default).
  explicit AuditLog(int fd = 2, DenialBudget budget = {});
  // Logs to the file at `path`, opened for append (created 0600). No other
  // user may be able to read, rewrite or replace the record, so the path
  // is checked as the policy's is (broker/util/trusted_path.h): every
  // directory on the way, the log's own included, owned by root or the
  // broker's euid and not writable by group or others unless sticky; every
  // symlink on the way owned by root or the broker; no symlink at the end.
  // The file must be a regular file (a FIFO is refused at once, never waited
  // on), owned by root or the broker, not writable by group or others, and
  // not readable by others (it records every user's requests; readable by
  // its group, for a log group, is fine).
  // Nor may it be one of `reserved` (the same device and inode as the file
  // at its path, if there is one then), here and at every Reopen.
  // Errors: kFailedPrecondition for any of those, naming what is wrong and
  // the fix; kNotFound for a missing directory; else the errno status.
  static absl::StatusOr<AuditLog> OpenFile(absl::string_view path,
                                           DenialBudget budget = {},
                                           std::vector<ReservedFile> reserved = {});

  // Goes on in a new file at `path` (opened and checked as by OpenFile),
  // for log rotation: lines still buffered are written to the old file
  // first (a line lost there is reported as by Flush), then the old file is
  // closed; if the old file was deleted (see "A deleted file" above), they
  // are written to the new one instead. On error the log stays where it
  // was.
  absl::Status Reopen(absl::string_view path);

  AuditLog(AuditLog&&) = default;
  AuditLog& operator=(AuditLog&&) = default;

  // Adds one line for `event` at `now`. Returns its sequence number
  // (1 for the log's first line, then counting up), or 0 for a denial over
  // its uid's budget (unless exempt_from_budget), which is only counted.
  uint64_t Record(const AuditEvent& event, Instant now);

  // Writes the buffered lines, after adding the "denialsSuppressed" lines
  // due at `now`; first, if a second has passed since the last check,
  // reopens the path if the file open was deleted (see "A deleted file"
  // above). Returns how many lines were dropped so far because writing
  // failed.
  uint64_t Flush(Instant now);
  // Flush at the current time (InstantNow).
  uint64_t Flush();
  // Flush, with every "denialsSuppressed" line still waiting, due or not:
  // for when the broker stops.
  uint64_t FlushAll();

  // Whether the log can never be written again: it is an fd the broker
  // was given (stderr), which it cannot reopen, and a write failed with
  // EPIPE, so its reader is gone for good (a closed pipe, a log collector
  // that exited). Every grant would be withheld from then on: the broker
  // stops instead (BrokerLoop::Serve). A log opened by path (OpenFile) is
  // a regular file, which never fails so, and is reopened by SIGHUP.
  bool reader_gone() const { return reader_gone_; }

  // Lines lost so far because writing failed (by Flush, FlushAll, Reopen
  // or a flush inside Record): what Flush returns, for capctl status, which
  // must show a loss however it happened.
  uint64_t lines_dropped() const { return dropped_lines_; }

  // Denials not written one by one so far.
  uint64_t denials_suppressed() const { return denials_suppressed_; }

  // The sequence numbers of lines that could not be written since the last
  // call, as ranges of consecutive lines, oldest first; forgets them.
  struct LineRange {
    uint64_t first = 0;
    uint64_t last = 0;
    bool Contains(uint64_t line) const { return line >= first && line <= last; }
  };
  std::vector<LineRange> TakeLostLines() { return std::exchange(lost_lines_, {}); }

  // Lines to write, or suppressed denials whose count is still to be
  // written: the loop calls Flush while this holds. A flush with no count
  // due costs a clock read and a look at the earliest count.
  bool has_pending() const { return !buffer_.empty() || !counts_due_.empty(); }

  // The outcome of the last reopen a flush made because the file had been
  // deleted, if one was made since the last call; forgets it. An error
  // says the file was deleted, why the path was refused, and where the
  // lines go meanwhile.
  std::optional<absl::Status> TakeReopenAfterDeletion() {
    return std::exchange(reopen_after_deletion_, std::nullopt);
  }

  // Lines written to a file of this log after it was last seen with its
  // name, when a later check found it deleted (see "A deleted file"
  // above): lost with it. Summed over every deletion since the log was
  // opened, the file open now included while its path is refused.
  uint64_t lines_to_deleted_files() const {
    return lines_to_deleted_files_ + (deletion_seen_ ? lines_since_named_ : 0);
  }

  // The uids whose denial budget is held (see above), for tests.
  size_t uids_budgeted() const { return buckets_.size(); }
  // The buckets examined so far by flushes looking for due counts and by
  // the sweeps of full buckets, in all: the work the budget costs, for
  // tests.
  uint64_t buckets_examined() const { return buckets_examined_; }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Duration refilled;  // Instant::steady of the last refill
    uint64_t suppressed = 0;  // denials since the last line about them
    // While suppressed > 0: when the bucket holds a token again, and the
    // count line is due (its key in counts_due_).
    absl::Duration count_due;
  };
  // Whether a denial of `uid` at `now` gets a line; counts it if not, and
  // writes the count of those before it if so.
  bool AllowDenial(uint32_t uid, Instant now);
  void Refill(Bucket& bucket, absl::Duration steady) const;
  // Writes the "denialsSuppressed" lines due at `now` (all when `all`).
  void WriteSuppressedCounts(Instant now, bool all);
  void AppendSuppressedCount(uint32_t uid, Bucket& bucket, absl::Time wall);
  // Drops the full buckets with nothing suppressed, if a refill time has
  // passed since the last sweep.
  void ExpireFullBuckets(absl::Duration steady);
  // Reopens path_ if the open file has no name left (see "A deleted file"),
  // at most once a second.
  void ReopenIfDeleted(Instant now);
  // Goes on in `fd`, a file OpenLogFile opened at path_ at `now`
  // (Instant::wall); forgets all about the file open before, its deletion
  // and a refused reopen included.
  void Adopt(UniqueFd fd, absl::Time now);
  // Adopt, for when the file open has no name left: says so on stderr,
  // with what went to the deleted file, and counts it. The caller writes
  // buffer_ after.
  void AdoptAfterDeletion(UniqueFd fd, absl::Time now);
  // Starts a line: `{"time":"...Z"`.
  void AppendTime(absl::Time now);
  // Writes buffer_ out; returns the count of dropped lines so far. `now`
  // (read when needed if unset) is for ReportFailure's ration.
  uint64_t WriteBuffer(std::optional<absl::Time> now = std::nullopt);
  // Says on stderr that a write failed (`why`), losing `lost` lines, within
  // failure_log_'s ration.
  void ReportFailure(const char* why, size_t lost, absl::Time now);

  UniqueFd owned_;
  int fd_;
  std::string path_;  // of the file open (OpenFile, Reopen); empty: fd given
  std::vector<ReservedFile> reserved_;  // checked by every open (OpenFile)
  absl::Duration next_link_check_;  // Instant::steady of ReopenIfDeleted's next check
  bool deletion_reported_ = false;  // on stderr, for the file open now
  // When the file open now was last seen with its name (Instant::wall: a
  // check found it named, or it was opened), the lines written to it since
  // (not counting those lost), and whether a check found it deleted.
  absl::Time named_seen_;
  uint64_t lines_since_named_ = 0;
  bool deletion_seen_ = false;
  // lines_since_named_ of the files found deleted and left behind.
  uint64_t lines_to_deleted_files_ = 0;
  std::optional<absl::Status> reopen_after_deletion_;
  bool reader_gone_ = false;  // see reader_gone()
  // The log's last byte is not a newline (a failed write cut a line short):
  // the next flush writes a newline first.
  bool mid_line_ = false;
  std::string buffer_;
  size_t pending_lines_ = 0;  // in buffer_
  uint64_t next_line_ = 1;  // the sequence number Record gives next
  std::vector<LineRange> lost_lines_;
  uint64_t dropped_lines_ = 0;
  LogLimiter failure_log_;  // stderr lines about failed writes
  int64_t cached_second_ = 0;  // the Unix second cached_time_ shows
  std::string cached_time_;    // "YYYY-MM-DDTHH:MM:SS" of cached_second_
  DenialBudget budget_;
  // Buckets of the uids denied lately (see above for what bounds them).
  absl::flat_hash_map<uint32_t, Bucket> buckets_;
  // The uids with suppressed denials, by when their count is due
  // (Bucket::count_due, then uid): a flush looks at the front only.
  std::set<std::pair<absl::Duration, uint32_t>> counts_due_;
  absl::Duration next_expiry_;  // Instant::steady of the next sweep
  uint64_t buckets_examined_ = 0;
  uint64_t denials_suppressed_ = 0;
};

}  // namespace capbroker::audit

#endif  // CAPBROKER_BROKER_AUDIT_AUDIT_LOG_H_
