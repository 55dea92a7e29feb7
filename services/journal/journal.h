// Journal: appends records to a log it holds only as an append-only fd.
//
// The fd must be a regular file opened write-only with O_APPEND (a file
// capability with access = append): the journal refuses to start with one
// it could read or rewrite. With O_APPEND the kernel places every write()
// at the end of the file, atomically, whatever the fd's offset, so a
// record is never written over another, even if something moved the
// offset. Each record is one write() of one line, and (with `sync`)
// fdatasync'd before Append returns.
#ifndef CAPBROKER_SERVICES_JOURNAL_JOURNAL_H_
#define CAPBROKER_SERVICES_JOURNAL_JOURNAL_H_

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sdk/base/unique_fd.h"
#include "sdk/service/connection_loop.h"
#include "services/journal/record_id.h"

namespace capbroker::journal {

class Journal {
 public:
  struct Options {
    bool sync = true;  // fdatasync each record before acknowledging it
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  // Takes `log` (the "log" grant). kFailedPrecondition, saying how to grant
  // it, unless it is a regular file open write-only with O_APPEND.
  static absl::StatusOr<Journal> Open(UniqueFd log, Options options);
  static absl::StatusOr<Journal> Open(UniqueFd log) { return Open(std::move(log), Options()); }

  Journal(Journal&&) = default;
  Journal& operator=(Journal&&) = default;

  // Appends a record of `text` from `peer`. kInvalidArgument /
  // kResourceExhausted for text that is not UTF-8 or too long (nothing is
  // written); an error when the write or the sync fails.
  absl::StatusOr<RecordId> Append(const Peer& peer, absl::string_view text);

  uint64_t run() const { return run_; }
  uint64_t records() const { return seq_; }

 private:
  Journal(UniqueFd log, Options options, uint64_t run)
      : log_(std::move(log)), options_(std::move(options)), run_(run) {}

  UniqueFd log_;
  Options options_;
  uint64_t run_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace capbroker::journal

#endif  // CAPBROKER_SERVICES_JOURNAL_JOURNAL_H_
