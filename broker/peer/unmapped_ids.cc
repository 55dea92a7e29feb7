#include "broker/peer/unmapped_ids.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sdk/base/decimal.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::peer {
namespace {

// The most an id map can hold: the kernel takes at most 340 ranges, each
// written as three 10-wide numbers ("%10u %10u %10u\n", 33 bytes).
constexpr size_t kMaxIdFileBytes = 16 * 1024;

// The text of the small file `path`, at most kMaxIdFileBytes.
absl::StatusOr<std::string> ReadIdFile(const char* path) {
  CB_ASSIGN_OR_RETURN(
      UniqueFd fd,
      TakeFd(RetryEintr([&] { return open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY); }),
             absl::StrCat("open ", path)));
  std::string text(kMaxIdFileBytes + 1, '\0');
  size_t length = 0;
  while (length < text.size()) {
    ssize_t n = RetryEintr([&] { return read(fd.get(), &text[length], text.size() - length); });
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    length += static_cast<size_t>(n);
  }
  if (length > kMaxIdFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " holds more than ", kMaxIdFileBytes, " bytes: no id map does"));
  }
  text.resize(length);
  return text;
}

// The overflow id in the sysctl file `path` ("65534\n").
absl::StatusOr<uint32_t> ReadOverflowId(const char* path) {
  CB_ASSIGN_OR_RETURN(std::string text, ReadIdFile(path));
  CB_ASSIGN_OR_RETURN(uint64_t id, ParseDecimal(path, absl::StripSuffix(text, "\n"), 0,
                                                UINT32_MAX));
  return static_cast<uint32_t>(id);
}

// The overflow id in `overflow_path` when the id map in `map_path` does
// not map it.
absl::StatusOr<std::optional<uint32_t>> UnmappedOverflowId(const char* map_path,
                                                           const char* overflow_path) {
  CB_ASSIGN_OR_RETURN(uint32_t overflow, ReadOverflowId(overflow_path));
  CB_ASSIGN_OR_RETURN(std::string map, ReadIdFile(map_path));
  CB_ASSIGN_OR_RETURN(bool mapped, IdMapHas(map, overflow, map_path));
  if (mapped) return std::nullopt;
  return overflow;
}

// The refusal of a peer whose `kind` ("uid" or "gid") reads as the
// overflow id `id`; `holder` is who to map ("user" or "group").
absl::Status Unmapped(absl::string_view kind, uint32_t id, absl::string_view holder) {
  return absl::FailedPreconditionError(absl::StrCat(
      "its ", kind, " is not mapped into the broker's user namespace (it reads as the overflow ",
      kind, " ", id, ", as does every unmapped ", holder,
      "'s, so the broker cannot tell who it is); run the broker in the initial user namespace "
      "or map the ", holder));
}

}  // namespace

absl::StatusOr<bool> IdMapHas(absl::string_view map, uint32_t id, absl::string_view name) {
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(map, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;  // the end, or a blank line
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t"),
                                                           absl::SkipEmpty());
    std::optional<uint64_t> inside = fields.size() == 3 ? ParseDecimal(fields[0]) : std::nullopt;
    std::optional<uint64_t> outside = fields.size() == 3 ? ParseDecimal(fields[1]) : std::nullopt;
    std::optional<uint64_t> length = fields.size() == 3 ? ParseDecimal(fields[2]) : std::nullopt;
    // The ids are 32 bits, and a range ends at 2^32 at the latest.
    constexpr uint64_t kIds = uint64_t{1} << 32;
    if (!inside || !outside || !length || *inside >= kIds || *outside >= kIds ||
        *length == 0 || *length > kIds - *inside || *length > kIds - *outside) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " line ", line_number,
          " is not an id range (three decimal numbers: first id inside, first id outside, "
          "length, within 32 bits): '", Shown(line), "'"));
    }
    if (id >= *inside && id - *inside < *length) return true;
  }
  return false;
}

absl::StatusOr<UnmappedIds> ReadUnmappedIds(const IdFiles& files) {
  UnmappedIds unmapped;
  CB_ASSIGN_OR_RETURN(unmapped.uid, UnmappedOverflowId(files.uid_map, files.overflow_uid));
  CB_ASSIGN_OR_RETURN(unmapped.gid, UnmappedOverflowId(files.gid_map, files.overflow_gid));
  return unmapped;
}

absl::Status CheckIdsMapped(const Credentials& credentials, const UnmappedIds& unmapped) {
  if (unmapped.uid == credentials.uid()) return Unmapped("uid", credentials.uid(), "user");
  if (unmapped.gid == credentials.gid()) return Unmapped("gid", credentials.gid(), "group");
  return absl::OkStatus();
}

}  // namespace capbroker::peer
