#include "services/kvstore/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/read_file.h"

namespace capbroker::kvstore {
namespace {

// Calls `visit` with each name in directory `dir` (borrowed; the grant
// `grant`), ".", ".." and all, through a new open of it, so that the
// directory stream has an offset of its own. Stops at the first error
// `visit` returns, and returns it: the names are not held, so a directory
// of any size costs no more memory than `visit` keeps.
absl::Status ForEachName(int dir, absl::string_view grant,
                         absl::FunctionRef<absl::Status(absl::string_view)> visit) {
  CB_ASSIGN_OR_RETURN(UniqueFd self,
                      TakeFd(openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
                             absl::StrCat("openat(", grant, " directory, \".\")")));
  DIR* stream = fdopendir(self.get());
  if (stream == nullptr) {
    return ErrnoStatus(errno, absl::StrCat("fdopendir(", grant, " directory)"));
  }
  self.release();  // the stream owns it now
  absl::Status status;
  int error = 0;
  for (;;) {
    // readdir tells its end from its failure by errno alone, which `visit`
    // (allocating) may leave set: cleared before each call.
    errno = 0;
    const dirent* entry = readdir(stream);
    if (entry == nullptr) {
      error = errno;
      break;
    }
    status = visit(entry->d_name);
    if (!status.ok()) break;
  }
  closedir(stream);
  if (!status.ok()) return status;
  if (error != 0) return ErrnoStatus(error, absl::StrCat("readdir(", grant, " directory)"));
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = RetryEintr([&] { return write(fd, data.data(), data.size()); });
    if (n < 0) {
      // Past RLIMIT_FSIZE (SIGXFSZ ignored: Service::FromEnvironment): a
      // quota, as a full disk is (ENOSPC already maps to
      // kResourceExhausted).
      if (errno == EFBIG) {
        return absl::ResourceExhaustedError(
            "write(temporary file): the value passes the file size limit (RLIMIT_FSIZE)");
      }
      return ErrnoStatus(errno, "write(temporary file)");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Store> Store::Open(UniqueFd dir, absl::string_view grant, Options options) {
  if (options.max_keys > kMaxKeys) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a limit of ", options.max_keys, " keys; at most ", kMaxKeys, " (what a client lists)"));
  }
  struct stat st {};
  if (fstat(dir.get(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat(", grant, " directory)"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(grant, ": not a directory (grant a directory capability)"));
  }
  if (RetryEintr([&] { return flock(dir.get(), LOCK_EX | LOCK_NB); }) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat(grant, ": another kvstore holds this directory"));
    }
    return ErrnoStatus(errno, absl::StrCat("flock(", grant, " directory)"));
  }
  Store store(std::move(dir), std::string(grant), options);
  CB_RETURN_IF_ERROR(store.CheckWritable());
  CB_RETURN_IF_ERROR(store.ReadKeys());
  return store;
}

absl::Status Store::ReadKeys() {
  // Both kinds of name are counted as they are read, and the reading stops
  // at the first past its limit, so that a directory filled from elsewhere
  // (key files copied in, a backup restored into it) costs neither memory
  // nor time beyond the limits. A store that loaded more keys than
  // max_keys would serve lists no client accepts (a client takes at most
  // kMaxKeys) and refuse every new key: it is refused at start instead,
  // saying what to move out.
  size_t others = 0;
  // Temporary files of puts that had not been acknowledged when the last
  // run ended, removed once the reading is done (not while the stream
  // reads the directory it would change).
  std::vector<std::string> stale;
  CB_RETURN_IF_ERROR(ForEachName(dir_.get(), grant_, [&](absl::string_view name) -> absl::Status {
    if (name == "." || name == "..") return absl::OkStatus();
    if (std::optional<std::string> key = KeyOfFileName(name)) {
      if (keys_.size() >= options_.max_keys) {
        return absl::FailedPreconditionError(absl::StrCat(
            grant_, " holds more than ", options_.max_keys, " key files (", kKeyPrefix,
            "*), this kvstore's limit of keys: move key files out of the directory until at most ",
            options_.max_keys, " are left, then start it again"));
      }
      keys_.insert(std::move(*key));
      return absl::OkStatus();
    }
    if (++others > kMaxOtherEntries) {
      return absl::FailedPreconditionError(absl::StrCat(
          grant_, " holds more than ", kMaxOtherEntries,
          " entries that are not key files (a store makes only key files, ", kKeyPrefix,
          "*, and temporary files, ", kTempPrefix, "*): move the others out of the directory, "
          "then start the kvstore again"));
    }
    if (absl::StartsWith(name, kTempPrefix)) stale.emplace_back(name);
    return absl::OkStatus();
  }));
  for (const std::string& name : stale) {
    if (unlinkat(dir_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("unlinkat(", grant_, "/", name, ")"));
    }
  }
  if (!stale.empty()) CB_RETURN_IF_ERROR(SyncDirectory());
  return absl::OkStatus();
}

absl::Status Store::CheckWritable() {
  // A temporary file's name: should this process die before the unlink,
  // the next Open removes it.
  CB_ASSIGN_OR_RETURN(const std::string probe, TempName());
  absl::StatusOr<UniqueFd> file = TakeFd(
      openat(dir_.get(), probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600),
      absl::StrCat("openat(", grant_, "/", probe, ")"));
  if (!file.ok()) {
    // Named by its grant: the service cannot know the directory's path
    // (/proc shows it as the sandbox sees it, "/"), nor its owner (an
    // owner outside the service's user namespace shows as the overflow
    // uid).
    // The mode, when fstat tells it, shows whether the directory is
    // writable at all; without it the message still says what to do.
    struct stat st {};
    const std::string mode = fstat(dir_.get(), &st) == 0
                                 ? absl::StrFormat(" (mode %04o)", st.st_mode & 07777)
                                 : "";
    const unsigned uid = geteuid();
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: the granted directory%s does not let the kvstore, running as uid %u, "
        "create files in it (%s); make it writable by uid %u",
        grant_, mode, uid, file.status().message(), uid));
  }
  file->reset();
  if (unlinkat(dir_.get(), probe.c_str(), 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("unlinkat(", grant_, "/", probe, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Store::TempName() {
  timespec now{};
  if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
    return ErrnoStatus(errno, "clock_gettime(CLOCK_REALTIME)");
  }
  return absl::StrCat(kTempPrefix, getpid(), ".", now.tv_sec, now.tv_nsec, ".", ++temp_counter_);
}

absl::Status Store::SyncDirectory() {
  if (RetryEintr([&] { return fsync(dir_.get()); }) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fsync(", grant_, " directory)"));
  }
  return absl::OkStatus();
}

absl::Status Store::SyncChange(absl::string_view done) {
  absl::Status synced = SyncDirectory();
  if (synced.ok()) return synced;
  // Not the errno's code (EIO is kUnavailable, which says "try again"):
  // the change was made, and Linux may have dropped the pages whose
  // write-back failed, so it may be lost already. kDataLoss invites no
  // blind retry; the caller reads back what it needs, or restores it.
  return absl::DataLossError(absl::StrCat(done, ": ", synced.message()));
}

absl::Status Store::Put(absl::string_view key, absl::string_view value) {
  CB_RETURN_IF_ERROR(CheckKey(key));
  CB_RETURN_IF_ERROR(CheckValue(value));
  const std::string name = KeyFileName(key);
  const bool exists = keys_.count(std::string(key)) != 0;
  if (!exists && keys_.size() >= options_.max_keys) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the store is full: it holds ", keys_.size(), " keys, its limit is ",
                     options_.max_keys, "; delete a key to put a new one (the keys it holds "
                     "can still be changed)"));
  }
  CB_ASSIGN_OR_RETURN(const std::string temp, TempName());
  CB_ASSIGN_OR_RETURN(
      UniqueFd file,
      TakeFd(openat(dir_.get(), temp.c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600),
             absl::StrCat("openat(", grant_, "/", temp, ")")));
  absl::Status status = WriteAll(file.get(), value);
  if (status.ok() && RetryEintr([&] { return fsync(file.get()); }) != 0) {
    status = ErrnoStatus(errno, "fsync(temporary file)");
  }
  file.reset();
  if (status.ok() && renameat(dir_.get(), temp.c_str(), dir_.get(), name.c_str()) != 0) {
    status = ErrnoStatus(errno, absl::StrCat("renameat(", grant_, "/", temp, ", ", grant_, "/",
                                             name, ")"));
  }
  if (!status.ok()) {
    unlinkat(dir_.get(), temp.c_str(), 0);  // best effort; Open removes it otherwise
    return status;
  }
  if (!exists) keys_.emplace(key);
  // The new value is in place; until this fsync it might not survive a
  // power failure, so the put is not acknowledged before it.
  return SyncChange("the new value is in place but may not survive a crash");
}

absl::StatusOr<std::string> Store::Get(absl::string_view key) {
  CB_RETURN_IF_ERROR(CheckKey(key));
  const std::string name = KeyFileName(key);
  // O_NONBLOCK: whatever sits under a key's name, opening it must not
  // wait (a FIFO put there by hand); ReadRegularFile refuses it after.
  int fd = openat(dir_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return absl::NotFoundError("no such key");
  if (fd < 0 && errno == ELOOP) {
    return absl::FailedPreconditionError(
        absl::StrCat(grant_, "/", name, ": a symbolic link, which the store never makes"));
  }
  CB_ASSIGN_OR_RETURN(UniqueFd file,
                      TakeFd(fd, absl::StrCat("openat(", grant_, "/", name, ")")));
  return ReadRegularFile(file.get(), kMaxValueBytes, absl::StrCat(grant_, "/", name));
}

absl::Status Store::Delete(absl::string_view key) {
  CB_RETURN_IF_ERROR(CheckKey(key));
  const std::string name = KeyFileName(key);
  if (unlinkat(dir_.get(), name.c_str(), 0) != 0) {
    if (errno == ENOENT) return absl::NotFoundError("no such key");
    return ErrnoStatus(errno, absl::StrCat("unlinkat(", grant_, "/", name, ")"));
  }
  keys_.erase(std::string(key));
  return SyncChange("the key is removed but may come back after a crash");
}

}  // namespace capbroker::kvstore
