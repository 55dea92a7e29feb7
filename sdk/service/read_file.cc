#include "sdk/service/read_file.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"

namespace capbroker {
namespace {

absl::string_view KindOf(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFLNK: return "a symbolic link";
    default: return "not a regular file";
  }
}

}  // namespace

absl::Status RequireRegularFile(const struct stat& st, absl::string_view what) {
  if (S_ISREG(st.st_mode)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": ", KindOf(st.st_mode), ", not a regular file"));
}

absl::StatusOr<std::string> ReadRegularFile(int fd, size_t max_bytes, absl::string_view what) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("fstat(", what, ")"));
  if (absl::Status regular = RequireRegularFile(st, what); !regular.ok()) return regular;
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": ", st.st_size,
                                                     " bytes, more than the ", max_bytes,
                                                     " allowed"));
  }
  // One byte more than allowed, to see a file that grew past the limit.
  std::string data(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t length = 0;
  for (;;) {
    if (length == data.size()) {
      if (length > max_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat(what, ": more than the ", max_bytes, " bytes allowed"));
      }
      data.resize(std::min(max_bytes + 1, data.size() * 2));
    }
    ssize_t n = RetryEintr([&] { return pread(fd, &data[length], data.size() - length, length); });
    if (n < 0) {
      if (errno == EBADF) {
        return absl::FailedPreconditionError(absl::StrCat(what, ": not open for reading"));
      }
      return ErrnoStatus(errno, absl::StrCat("pread(", what, ")"));
    }
    if (n == 0) break;
    length += static_cast<size_t>(n);
  }
  data.resize(length);
  return data;
}

}  // namespace capbroker
