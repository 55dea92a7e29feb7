#include "services/journal/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/read_file.h"
#include "services/journal/record.h"

namespace capbroker::journal {

uint64_t LeastMaxLogBytes() { return MaxRecordLineBytes(); }

absl::StatusOr<Journal> Journal::Open(UniqueFd log, absl::string_view grant,
                                      Options options) {
  if (options.max_log_bytes < LeastMaxLogBytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a log size limit (--max-log-bytes) of ", options.max_log_bytes,
        " bytes has no room for a record of the largest size; the least is ",
        LeastMaxLogBytes()));
  }
  struct stat st {};
  if (fstat(log.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(", grant, ")"));
  CB_RETURN_IF_ERROR(RequireRegularFile(st, grant));
  const int flags = fcntl(log.get(), F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, absl::StrCat("fcntl(", grant, ", F_GETFL)"));
  if ((flags & O_ACCMODE) != O_WRONLY || (flags & O_APPEND) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        grant, ": not an append-only fd (write-only with O_APPEND); grant a file capability "
        "with access = append"));
  }
  const uint64_t run = static_cast<uint64_t>(absl::ToUnixNanos(options.now()));
  Journal journal(std::move(log), std::string(grant), std::move(options), run);
  // An earlier run may have left a fragment (a write cut short, its
  // newline failed too), which only lived in that run's line_broken_. The
  // fd cannot read the last byte (write-only, and the journal refuses any
  // other), so a log that holds anything is taken to end mid-line: the
  // run's first record starts with "\n", an empty line when it did not.
  journal.line_broken_ = st.st_size > 0;
  return journal;
}

absl::StatusOr<RecordId> Journal::Append(const Peer& peer, absl::string_view text) {
  CB_RETURN_IF_ERROR(CheckRecordText(text));
  const RecordId id{run_, seq_ + 1};
  // One write per record, so that records never interleave: the newline
  // that ends a fragment left by an earlier write goes with it.
  const std::string line = absl::StrCat(line_broken_ ? "\n" : "",
                                        FormatRecord(id.run, id.seq, options_.now(), peer, text));
  struct stat st {};
  if (fstat(log_.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(", grant_, ")"));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size + line.size() > options_.max_log_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the log is full: it holds ", size, " bytes, and this record of ", line.size(),
        " would pass its limit of ", options_.max_log_bytes, " bytes (--max-log-bytes)"));
  }
  ssize_t n = RetryEintr([&] { return write(log_.get(), line.data(), line.size()); });
  if (n < 0) {
    // Past RLIMIT_FSIZE: a quota, as a full disk is (ENOSPC already maps
    // to kResourceExhausted).
    if (errno == EFBIG) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "write(", grant_, "): the log has reached the file size limit (RLIMIT_FSIZE)"));
    }
    return ErrnoStatus(errno, absl::StrCat("write(", grant_, ")"));
  }
  // The number is spent even if the record failed, so that two lines never
  // carry the same one.
  seq_ = id.seq;
  if (static_cast<size_t>(n) != line.size()) {
    // The disk filled, or the file size limit came, mid-record. End the
    // fragment now (best effort: this usually fails for the same reason),
    // or else with the next record.
    if (n > 0) line_broken_ = line[n - 1] != '\n';
    if (line_broken_ && RetryEintr([&] { return write(log_.get(), "\n", 1); }) == 1) {
      line_broken_ = false;
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("write(", grant_, "): wrote ", n, " of ", line.size(), " bytes"));
  }
  line_broken_ = false;
  if (options_.sync && RetryEintr([&] { return fdatasync(log_.get()); }) != 0) {
    // The record is in the log, under its seq: an error the errno maps to
    // (EIO is kUnavailable, "try again") would have a client append it
    // twice. kDataLoss invites no blind retry, and is what may have
    // happened: Linux may have dropped the pages whose write-back failed.
    const int error = errno;
    return absl::DataLossError(absl::StrCat(
        "record ", id.seq, " of run ", id.run, " was written but not synced (do not append it "
        "again; it may not survive a crash): ",
        ErrnoStatus(error, absl::StrCat("fdatasync(", grant_, ")")).message()));
  }
  return id;
}

}  // namespace capbroker::journal
