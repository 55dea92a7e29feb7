#include "broker/audit/audit_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/audit/json.h"
#include "broker/util/trusted_path.h"
#include "sdk/base/escape.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"

namespace capbroker::audit {
namespace {

// A buffer this large is written even before the loop goes idle.
constexpr size_t kFlushThresholdBytes = 64 * 1024;

// Stderr lines about failed writes, at most (see audit_log.h).
constexpr int kWriteFailureLinesPerSecond = 1;

// How often a flush checks that the open file still has a name (see "A
// deleted file" in audit_log.h): an fstat(2) a second.
constexpr absl::Duration kDeletionCheckInterval = absl::Seconds(1);

// The sweep of full buckets runs at most this often, however fast the
// budget refills (see audit_log.h).
constexpr absl::Duration kMinExpiryInterval = absl::Seconds(1);

// write(2) with EINTR retried and EAGAIN waited out (see audit_log.h).
ssize_t WriteSome(int fd, const char* data, size_t size) {
  for (;;) {
    ssize_t n = RetryEintr([&] { return write(fd, data, size); });
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    pollfd p{fd, POLLOUT, 0};
    if (RetryEintr([&] { return poll(&p, 1, -1); }) < 0) return -1;
  }
}

// Whether the file open at `fd` has no name left: it was deleted (rm), and
// what is written to it vanishes when it is closed. fstat of an fd the log
// owns fails only if the kernel is out of memory: taken as named, and
// checked again at the next check.
bool Deleted(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && st.st_nlink == 0;
}

// Whether the regular file open at `fd` (write-only) ends within a line. It
// is read through a read-only open of /proc/self/fd/N: the very same file,
// whatever has happened to its path since.
bool EndsMidLine(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return false;
  absl::StatusOr<UniqueFd> reader = Reopen(fd, O_RDONLY, "reopen the audit log");
  char last = '\n';
  return reader.ok() &&
         RetryEintr([&] { return pread(reader->get(), &last, 1, st.st_size - 1); }) == 1 &&
         last != '\n';
}

// The refusal of the log at `path`, which is `other`. Here as in every
// message of OpenLogFile, the paths are quoted escaped, as the trusted path
// walk (broker/util/trusted_path.h) and CheckTrustedFileStat quote them: a
// configured path may hold any byte but '\0', and a newline would split the
// error line, an escape sequence reach the terminal.
absl::Status IsReserved(const std::string& path, const ReservedFile& other) {
  return absl::FailedPreconditionError(absl::StrCat(
      "audit log ", EscapedKeepingUtf8(path), " is ", other.what, " (",
      EscapedKeepingUtf8(other.path),
      "): audit lines would be appended to it; give the audit log a file of its own"));
}

// Whether `reserved` is the name `name` in the directory `dir_stat` is of:
// the same path in other words, whether or not a file is there.
bool SamePlace(const std::string& reserved, const struct stat& dir_stat,
               const std::string& name) {
  const size_t slash = reserved.rfind('/');
  if (reserved.substr(slash == std::string::npos ? 0 : slash + 1) != name) return false;
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : reserved.substr(0, slash);
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && st.st_dev == dir_stat.st_dev &&
         st.st_ino == dir_stat.st_ino;
}

// Opens the log at `path` for append, creating it (0600) if it is missing:
// in its directory, reached by a walk that checks every directory and
// symlink on the way and then the directory itself (broker/util/
// trusted_path.h), so that no other user can put a file of theirs in its
// place or rename ours away; then checks the file opened is one only root
// or the broker can write and replace (util::CheckTrustedFileStat), with
// one name, and that others cannot read. Created 0600: never readable by
// others, whatever the umask (which can only take bits away).
//
// O_NONBLOCK, cleared once the file is checked: an open for writing of a
// FIFO waits for a reader, and a FIFO put at the path at log rotation would
// stop the whole broker in that open. Non-blocking, it fails at once
// (ENXIO), or opens one someone reads, which the check refuses.
absl::StatusOr<UniqueFd> OpenLogFile(const std::string& path,
                                     const std::vector<ReservedFile>& reserved) {
  uid_t euid = geteuid();
  util::PathRules rules{euid, absl::StrCat("the audit log ", path), std::nullopt};
  CB_ASSIGN_OR_RETURN(util::ResolvedParent parent, util::OpenParent(path, rules));
  // The log's own directory: whoever could write it could rename the log
  // away and put theirs in its place, as for every directory above it.
  CB_RETURN_IF_ERROR(util::CheckTraversedDirectoryStat(parent.dir_path, parent.dir_stat, rules));
  // A reserved file not there yet (the socket and its lock file, before the
  // broker binds) is refused before the open below creates it: a regular
  // file left at the socket's path would make every later start fail on it.
  for (const ReservedFile& other : reserved) {
    if (SamePlace(other.path, parent.dir_stat, parent.name)) return IsReserved(path, other);
  }
  int raw = RetryEintr([&] {
    return openat(parent.dir.get(), parent.name.c_str(),
                  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
                  0600);
  });
  if (raw < 0) {
    int err = errno;
    if (err == ELOOP) {
      // O_NOFOLLOW: a symlink planted at the log path must not redirect the
      // broker's appends to a file of someone else's choosing.
      return absl::FailedPreconditionError(absl::StrCat(
          "audit log ", EscapedKeepingUtf8(path), " is a symlink; give the real path"));
    }
    // When what is at the path is the reason (a FIFO without a reader says
    // ENXIO; another user's file in a sticky directory, EACCES under
    // fs.protected_regular), say what it is rather than the errno.
    struct stat st;
    if (fstatat(parent.dir.get(), parent.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      CB_RETURN_IF_ERROR(util::CheckTrustedFileStat("audit log", path, st, euid));
    }
    return ErrnoStatus(err, absl::StrCat("open audit log ", EscapedKeepingUtf8(path)));
  }
  UniqueFd fd(raw);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat audit log ", EscapedKeepingUtf8(path)));
  }
  // First: what the file is matters more than its mode. A reserved file
  // that is missing (or cannot be stat'ed) is not the one just opened; one
  // there under another name (a hard link, a symlink) is found here.
  for (const ReservedFile& other : reserved) {
    struct stat other_st;
    if (stat(other.path.c_str(), &other_st) == 0 && other_st.st_dev == st.st_dev &&
        other_st.st_ino == st.st_ino) {
      return IsReserved(path, other);
    }
  }
  CB_RETURN_IF_ERROR(util::CheckTrustedFileStat("audit log", path, st, euid));
  // A second name could be a file of root's that someone else linked here
  // (in a sticky directory, where fs.protected_hardlinks is 0): the broker
  // would append the audit trail to it, for whoever may read that file.
  if (st.st_nlink != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "audit log ", EscapedKeepingUtf8(path), " has ", st.st_nlink,
        " hard links: another name may be a file someone else linked here; give the log a "
        "file of its own (one link)"));
  }
  // The log records every user's uid, pid and executable and the names and
  // paths they asked for: no one but root, the broker and the file's group
  // (a log group, 0640) may read it back. Checked here rather than in
  // CheckTrustedFileStat, which the policy file shares: that one may be
  // world-readable by design.
  if ((st.st_mode & S_IROTH) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "audit log %s is readable by other users (mode 0%o), and it records every user's "
        "requests; chmod o-r %s",
        EscapedKeepingUtf8(path), st.st_mode & 07777, EscapedKeepingUtf8(path)));
  }
  CB_RETURN_IF_ERROR(SetNonBlocking(fd.get(), false));
  return fd;
}

// Appends `prefix` (the JSON around a field's name, which needs no escaping)
// and then `value` as a JSON string.
void AppendField(absl::string_view prefix, absl::string_view value, std::string& out) {
  out.append(prefix.data(), prefix.size());
  AppendJsonString(value, out);
}

}  // namespace

Instant InstantNow() {
  Instant now;
  // The wall clock is read directly: on a VM absl::Now() mostly takes its
  // slow path, about 50 ns more per grant (broker/server:dispatch_bench).
  timespec wall;
  now.wall = clock_gettime(CLOCK_REALTIME, &wall) == 0 ? absl::TimeFromTimespec(wall)
                                                       : absl::Now();
  // CLOCK_MONOTONIC (libstdc++'s steady_clock), which no one can step.
  now.steady = absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  return now;
}

std::string RenderPeer(uint32_t uid, uint32_t gid, pid_t pid, absl::string_view exe) {
  std::string out = absl::StrCat("{\"uid\":", uid, ",\"gid\":", gid, ",\"pid\":", pid);
  AppendField(",\"exe\":", exe, out);
  out += "}";
  return out;
}

AuditLog::AuditLog(int fd, DenialBudget budget)
    : fd_(fd), failure_log_(kWriteFailureLinesPerSecond), budget_(budget) {}

absl::StatusOr<AuditLog> AuditLog::OpenFile(absl::string_view path, DenialBudget budget,
                                             std::vector<ReservedFile> reserved) {
  AuditLog log(-1, budget);
  log.reserved_ = std::move(reserved);
  CB_RETURN_IF_ERROR(log.Reopen(path));
  return log;
}

absl::Status AuditLog::Reopen(absl::string_view path) {
  std::string new_path(path);
  CB_ASSIGN_OR_RETURN(UniqueFd fd, OpenLogFile(new_path, reserved_));
  if (fd_ >= 0 && Deleted(fd_)) {
    // rm, then SIGHUP: the lines held would vanish with the old file, their
    // grants delivered and on no record. They go to the new one.
    path_ = std::move(new_path);
    AdoptAfterDeletion(std::move(fd), absl::Now());
    WriteBuffer();
    return absl::OkStatus();
  }
  if (fd_ >= 0) {
    WriteBuffer();
    // A line the old file holds whole but for its newline (see WriteBuffer)
    // gets it there: the new file starts afresh.
    if (mid_line_ && WriteSome(fd_, "\n", 1) != 1) {
      std::fprintf(stderr,
                   "capbrokerd: audit log write failed (%s): the last line of the old log "
                   "file lacks its newline\n",
                   std::strerror(errno));
    }
  }
  path_ = std::move(new_path);
  Adopt(std::move(fd), absl::Now());
  return absl::OkStatus();
}

void AuditLog::Adopt(UniqueFd fd, absl::Time now) {
  mid_line_ = EndsMidLine(fd.get());
  fd_ = fd.get();
  owned_ = std::move(fd);
  deletion_reported_ = false;
  named_seen_ = now;
  lines_since_named_ = 0;
  deletion_seen_ = false;
  // A refusal the loop has not taken yet is out of date: the log is at its
  // path again (a SIGHUP's Reopen), and status must not say otherwise.
  reopen_after_deletion_.reset();
}

void AuditLog::AdoptAfterDeletion(UniqueFd fd, absl::Time now) {
  // Not copied (see "A deleted file" in audit_log.h): counted and dated.
  const uint64_t lines = lines_since_named_;
  lines_to_deleted_files_ += lines;
  std::fprintf(stderr,
               "capbrokerd: the audit log file was deleted (not renamed, as for rotation); "
               "going on in a new file at %s. %llu %s written since %s, when the file was "
               "last seen with its name, went to the deleted file and are lost with it (the "
               "broker cannot tell which of them came before the deletion); capctl status "
               "counts them\n",
               EscapedKeepingUtf8(path_).c_str(), static_cast<unsigned long long>(lines),
               lines == 1 ? "line" : "lines",
               absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", named_seen_, absl::UTCTimeZone()).c_str());
  Adopt(std::move(fd), now);
}

void AuditLog::ReopenIfDeleted(Instant now) {
  if (path_.empty() || now.steady < next_link_check_) return;
  next_link_check_ = now.steady + kDeletionCheckInterval;
  if (!Deleted(fd_)) {
    named_seen_ = now.wall;
    lines_since_named_ = 0;
    return;
  }
  deletion_seen_ = true;
  absl::StatusOr<UniqueFd> fd = OpenLogFile(path_, reserved_);
  if (!fd.ok()) {
    // Kept for capctl status (through the loop), and said once on stderr.
    reopen_after_deletion_ = absl::Status(
        fd.status().code(),
        absl::StrCat("the audit log file was deleted, and its path cannot be opened again: ",
                     fd.status().message(),
                     "; until it can (tried each second, and at SIGHUP), lines go on into "
                     "the deleted file, and are lost with it (at the next reopen, or when "
                     "the broker stops)"));
    if (!deletion_reported_) {
      std::fprintf(stderr, "capbrokerd: %s\n",
                   std::string(reopen_after_deletion_->message()).c_str());
      deletion_reported_ = true;
    }
    return;
  }
  // The lines still buffered go to the new file (Flush writes them next):
  // the deleted one keeps nothing. Its fragment of a line, if any, does not
  // matter either.
  AdoptAfterDeletion(*std::move(fd), now.wall);
  reopen_after_deletion_ = absl::OkStatus();
}

void AuditLog::AppendTime(absl::Time now) {
  // Formatting a time is costly next to the rest of a line: the date and
  // time are formatted once per second, the milliseconds every time.
  int64_t millis = absl::ToUnixMillis(now);
  int64_t second = millis >= 0 ? millis / 1000 : (millis - 999) / 1000;
  if (second != cached_second_ || cached_time_.empty()) {
    cached_second_ = second;
    cached_time_ = absl::FormatTime("%Y-%m-%dT%H:%M:%S",
                                    absl::FromUnixSeconds(second), absl::UTCTimeZone());
  }
  int ms = static_cast<int>(millis - second * 1000);
  const char fraction[] = {'.', static_cast<char>('0' + ms / 100),
                           static_cast<char>('0' + ms / 10 % 10),
                           static_cast<char>('0' + ms % 10), 'Z', '"'};
  absl::StrAppend(&buffer_, "{\"time\":\"", cached_time_,
                  absl::string_view(fraction, sizeof(fraction)));
}

void AuditLog::Refill(Bucket& bucket, absl::Duration steady) const {
  if (steady > bucket.refilled) {
    bucket.tokens = std::min<double>(
        budget_.burst,
        bucket.tokens + absl::ToDoubleSeconds(steady - bucket.refilled) * budget_.per_second);
    bucket.refilled = steady;
  }
}

void AuditLog::ExpireFullBuckets(absl::Duration steady) {
  if (steady < next_expiry_) return;
  // A bucket emptied just after this sweep is full one refill time later,
  // and dropped by the next sweep, one refill time on: what is held is the
  // uids denied in the last two refill times.
  next_expiry_ = budget_.per_second > 0
                     ? steady + std::max(absl::Seconds(budget_.burst / budget_.per_second),
                                         kMinExpiryInterval)
                     : absl::InfiniteDuration();  // buckets never fill again
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    ++buckets_examined_;
    Bucket& bucket = it->second;
    Refill(bucket, steady);
    if (bucket.suppressed == 0 && bucket.tokens >= budget_.burst) {
      buckets_.erase(it++);
    } else {
      ++it;
    }
  }
}

bool AuditLog::AllowDenial(uint32_t uid, Instant now) {
  ExpireFullBuckets(now.steady);
  auto [it, inserted] = buckets_.try_emplace(uid);
  Bucket& bucket = it->second;
  if (inserted) {
    bucket.tokens = budget_.burst;
    bucket.refilled = now.steady;
  }
  Refill(bucket, now.steady);
  if (bucket.tokens < 1) {
    if (bucket.suppressed++ == 0) {
      // Until its count is written, no token is taken from the bucket:
      // this is when it holds one again.
      bucket.count_due =
          budget_.per_second > 0
              ? now.steady + absl::Seconds((1 - bucket.tokens) / budget_.per_second)
              : absl::InfiniteDuration();
      counts_due_.emplace(bucket.count_due, uid);
    }
    ++denials_suppressed_;
    return false;
  }
  bucket.tokens -= 1;
  // The count costs no token: there is at most one per line allowed.
  if (bucket.suppressed > 0) AppendSuppressedCount(uid, bucket, now.wall);
  return true;
}

void AuditLog::AppendSuppressedCount(uint32_t uid, Bucket& bucket, absl::Time wall) {
  AppendTime(wall);
  absl::StrAppend(&buffer_, ",\"event\":\"denialsSuppressed\",\"peer\":{\"uid\":", uid,
                  "},\"count\":", bucket.suppressed);
  AppendField(",\"reason\":",
              absl::StrCat("more denials for this uid than the audit log takes (",
                           budget_.burst, " at once, then ", budget_.per_second,
                           " a second); these were counted, not written"),
              buffer_);
  buffer_ += "}\n";
  ++pending_lines_;
  ++next_line_;
  bucket.suppressed = 0;
  counts_due_.erase({bucket.count_due, uid});
}

void AuditLog::WriteSuppressedCounts(Instant now, bool all) {
  while (!counts_due_.empty()) {
    const auto [due, uid] = *counts_due_.begin();
    if (!all && due > now.steady) return;
    ++buckets_examined_;
    // A bucket with a count waiting is never dropped (ExpireFullBuckets).
    AppendSuppressedCount(uid, buckets_.find(uid)->second, now.wall);
  }
}

uint64_t AuditLog::Record(const AuditEvent& e, Instant now) {
  if (!e.granted && !e.exempt_from_budget && !AllowDenial(e.uid, now)) return 0;
  std::string& out = buffer_;
  AppendTime(now.wall);
  absl::StrAppend(&out, e.granted ? ",\"event\":\"grant\"" : ",\"event\":\"deny\"",
                  ",\"peer\":", e.peer);
  AppendField(",\"request\":{\"kind\":", e.request, out);
  AppendField(",\"capability\":", e.capability, out);
  AppendField(",\"access\":", e.access, out);
  if (!e.path.empty()) AppendField(",\"path\":", e.path, out);
  if (e.open.create) {
    // Octal, as modes are written (0644), in a string: JSON has no octal.
    absl::StrAppendFormat(&out, ",\"create\":true,\"mode\":\"%04o\"", e.open.mode & 07777);
  }
  if (e.open.truncate) out += ",\"truncate\":true";
  out += e.granted ? "},\"decision\":\"granted\"" : "},\"decision\":\"denied\"";
  if (e.granted && e.open.create) {
    out += e.open.created ? ",\"created\":true" : ",\"created\":false";
  }
  AppendField(",\"principal\":", e.principal, out);
  AppendField(",\"reason\":", e.reason, out);
  out += "}\n";
  ++pending_lines_;
  uint64_t line = next_line_++;
  if (buffer_.size() >= kFlushThresholdBytes) Flush(now);
  return line;
}

uint64_t AuditLog::FlushAll() {
  const Instant now = InstantNow();
  WriteSuppressedCounts(now, /*all=*/true);
  uint64_t dropped = Flush(now);
  // No later line will report them.
  if (uint64_t unreported = failure_log_.TakeSuppressed(); unreported > 0) {
    std::fprintf(stderr,
                 "capbrokerd: audit log: %llu more failed writes since the last line about "
                 "one; %llu lines lost in all\n",
                 static_cast<unsigned long long>(unreported),
                 static_cast<unsigned long long>(dropped));
  }
  return dropped;
}

uint64_t AuditLog::Flush() { return Flush(InstantNow()); }

uint64_t AuditLog::Flush(Instant now) {
  WriteSuppressedCounts(now, /*all=*/false);
  ExpireFullBuckets(now.steady);
  ReopenIfDeleted(now);
  return WriteBuffer(now.wall);
}

uint64_t AuditLog::WriteBuffer(std::optional<absl::Time> now) {
  if (buffer_.empty()) return dropped_lines_;
  // A fragment left by a failed write is ended first (see audit_log.h). The
  // copy costs something only after a failure.
  size_t start = 0;
  if (mid_line_) {
    buffer_.insert(buffer_.begin(), '\n');
    start = 1;
  }
  size_t done = 0;
  size_t lost = 0;
  while (done < buffer_.size()) {
    ssize_t n = WriteSome(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n <= 0) {
      // The lines not written whole are lost, a fragment of the first of
      // them included: always the last lines of the buffer. A line whose
      // every byte but its newline went out is not lost: the file holds it
      // whole, and its newline comes first in the next flush, in the old
      // file at a Reopen, or, should the broker die first, at the next open
      // of the file (EndsMidLine), which makes it a valid line. Counted
      // lost, its grant would be withheld while the log says granted.
      size_t from = std::max(done, start);
      if (done > start && buffer_[done] == '\n') ++from;
      lost = static_cast<size_t>(
          std::count(buffer_.begin() + static_cast<long>(from), buffer_.end(), '\n'));
      dropped_lines_ += lost;
      if (lost > 0) lost_lines_.push_back({next_line_ - lost, next_line_ - 1});
      if (done > 0) mid_line_ = buffer_[done - 1] != '\n';
      const int err = n < 0 ? errno : 0;
      // A pipe or socket whose reader is gone stays so: nothing written
      // to it can ever arrive, and a log given as an fd cannot be reopened.
      if (err == EPIPE && path_.empty()) reader_gone_ = true;
      ReportFailure(err != 0 ? std::strerror(err) : "no progress", lost,
                    now.has_value() ? *now : absl::Now());
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (done == buffer_.size()) mid_line_ = false;
  lines_since_named_ += pending_lines_ - lost;
  buffer_.clear();
  pending_lines_ = 0;
  return dropped_lines_;
}

void AuditLog::ReportFailure(const char* why, size_t lost, absl::Time now) {
  // A client can make a flush fail per request while the disk is full: the
  // lines are rationed, and the total in each says what the others would.
  uint64_t unreported = 0;
  if (!failure_log_.Allow(now, unreported)) return;
  std::string more;
  if (unreported > 0) {
    more = absl::StrCat(" (", unreported, " more failed writes since the last such line)");
  }
  std::fprintf(stderr, "capbrokerd: audit log write failed (%s): %zu %s lost, %llu in all%s\n",
               why, lost, lost == 1 ? "line" : "lines",
               static_cast<unsigned long long>(dropped_lines_), more.c_str());
}

}  // namespace capbroker::audit
