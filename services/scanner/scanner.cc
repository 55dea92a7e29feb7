#include "services/scanner/scanner.h"

#include <linux/magic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/read_file.h"

namespace capbroker::scanner {
namespace {

// linux/magic.h does not define it; fs/fuse/inode.c does.
constexpr long kFuseSuperMagic = 0x65735546;

uint8_t* AllocateAligned(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) return nullptr;
  return static_cast<uint8_t*>(p);
}

std::vector<std::string> NamesOf(const std::vector<Signature>& signatures) {
  std::vector<std::string> names;
  names.reserve(signatures.size());
  for (const Signature& s : signatures) names.push_back(s.name);
  return names;
}

}  // namespace

void Scanner::FreeDeleter::operator()(uint8_t* p) const { free(p); }

Scanner::Scanner(std::vector<Signature> signatures, Options options)
    : options_(options),
      names_(NamesOf(signatures)),
      matcher_(signatures),
      buffer_(AllocateAligned(options.chunk_bytes)) {}

absl::StatusOr<Verdict> Scanner::Scan(int fd) {
  if (!buffer_) return absl::ResourceExhaustedError("no memory for the scan buffer");
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "fstat(file to scan)");
  CB_RETURN_IF_ERROR(RequireRegularFile(st, "file to scan"));
  struct statfs fs {};
  if (fstatfs(fd, &fs) == 0 && fs.f_type == kFuseSuperMagic) {
    return absl::FailedPreconditionError(
        "file to scan: on a FUSE filesystem, whose reads could stall the scanner");
  }
  if (static_cast<uint64_t>(st.st_size) > options_.max_file_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("file to scan: ", st.st_size,
                                                     " bytes, more than the ",
                                                     options_.max_file_bytes, " allowed"));
  }
  Verdict verdict;
  Matcher::State state = Matcher::kStart;
  uint64_t offset = 0;
  for (;;) {
    ssize_t n = RetryEintr(
        [&] { return pread(fd, buffer_.get(), options_.chunk_bytes, static_cast<off_t>(offset)); });
    if (n < 0) {
      if (errno == EBADF) {
        return absl::FailedPreconditionError("file to scan: not open for reading");
      }
      return ErrnoStatus(errno, absl::StrCat("pread(file to scan, offset ", offset, ")"));
    }
    if (n == 0) break;
    // The size checked above is not a bound: the file may grow while it is
    // read, and a file of /proc or /sys says 0 bytes and holds more.
    if (offset + n > options_.max_file_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("file to scan: more than the ", options_.max_file_bytes,
                       " bytes allowed (more than its size said when the scan began)"));
    }
    std::optional<size_t> found =
        matcher_.Feed(state, absl::MakeConstSpan(buffer_.get(), static_cast<size_t>(n)));
    if (found.has_value()) {
      verdict.signature = names_[*found];
      // Feed stops at the match; how far into the chunk is not kept, and
      // the whole chunk counts as read.
      verdict.bytes_scanned = offset + n;
      return verdict;
    }
    offset += n;
  }
  verdict.bytes_scanned = offset;
  return verdict;
}

}  // namespace capbroker::scanner
