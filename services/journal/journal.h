// Journal: appends records to a log it holds only as an append-only fd.
//
// The fd must be a regular file opened write-only with O_APPEND (a file
// capability with access = append): the journal refuses to start with one
// it could read or rewrite. With O_APPEND the kernel places every write()
// at the end of the file, atomically, whatever the fd's offset, so a
// record is never written over another, even if something moved the
// offset. Each record is one write() of one line, and (with `sync`)
// fdatasync'd before Append returns.
//
// The log cannot be trimmed (an append grant is an append-only file), so
// the journal bounds it: a record that would take the file past
// Options::max_log_bytes is refused, as is one the kernel refuses for the
// file size limit (RLIMIT_FSIZE: EFBIG; the process must ignore SIGXFSZ,
// which would otherwise kill it: Service::FromEnvironment does) or a full
// disk. A write cut short leaves a
// fragment of a line at the end: the next record then starts with "\n",
// so that it never runs into the fragment. A fragment an earlier run left
// cannot be seen (the fd cannot read): the first record of a run on a log
// that is not empty starts with "\n" too, which leaves an empty line after
// a whole one (readers must skip empty lines: services/README.md).
#ifndef CAPBROKER_SERVICES_JOURNAL_JOURNAL_H_
#define CAPBROKER_SERVICES_JOURNAL_JOURNAL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"
#include "sdk/service/connection_loop.h"
#include "services/journal/record_id.h"

namespace capbroker::journal {

// The name of the log's grant unless the service's command says
// --grant=NAME.
inline constexpr char kDefaultGrant[] = "log";

// The default for Options::max_log_bytes: 1 GiB.
inline constexpr uint64_t kDefaultMaxLogBytes = uint64_t{1} << 30;

// The least Options::max_log_bytes: room for one record of the largest
// size in an empty log (MaxRecordLineBytes, record.h: about 25 KiB). Under
// a smaller limit, a journal would refuse records the protocol allows even
// with its log empty (a limit of 0: every record).
uint64_t LeastMaxLogBytes();

class Journal {
 public:
  struct Options {
    bool sync = true;  // fdatasync each record before acknowledging it
    // The log file's size limit, at least LeastMaxLogBytes(); appends
    // beyond it are refused (kResourceExhausted). A log already larger
    // takes no more records.
    uint64_t max_log_bytes = kDefaultMaxLogBytes;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  // Takes `log`, the grant named `grant`, which messages name it by
  // ("journal-log: a FIFO, not a regular file", "write(journal-log)").
  // kFailedPrecondition, saying how to grant it, unless it is a regular
  // file open write-only with O_APPEND; kInvalidArgument for a
  // max_log_bytes under LeastMaxLogBytes().
  static absl::StatusOr<Journal> Open(UniqueFd log, absl::string_view grant, Options options);
  static absl::StatusOr<Journal> Open(UniqueFd log, absl::string_view grant = kDefaultGrant) {
    return Open(std::move(log), grant, Options());
  }

  Journal(Journal&&) = default;
  Journal& operator=(Journal&&) = default;

  // Appends a record of `text` from `peer`. kInvalidArgument /
  // kResourceExhausted for text that is not UTF-8 or too long, and
  // kResourceExhausted for a record the log has no room for (past
  // max_log_bytes; nothing is written), or that the kernel cut short or
  // refused (EFBIG, ENOSPC); another error when the write fails; and
  // kDataLoss, naming the record's seq, when only the sync failed: the
  // record is in the log, but may not survive a crash, and appending it
  // again would write it twice.
  absl::StatusOr<RecordId> Append(const Peer& peer, absl::string_view text);

  uint64_t run() const { return run_; }
  uint64_t records() const { return seq_; }

 private:
  Journal(UniqueFd log, std::string grant, Options options, uint64_t run)
      : log_(std::move(log)), grant_(std::move(grant)), options_(std::move(options)), run_(run) {}

  UniqueFd log_;
  std::string grant_;  // for messages
  Options options_;
  uint64_t run_ = 0;
  uint64_t seq_ = 0;
  // The log ends in a fragment of a record, which a write cut short left,
  // or may (a log not empty at Open, whose end cannot be read).
  bool line_broken_ = false;
};

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_JOURNAL_H_
