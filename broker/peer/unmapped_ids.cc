#include "broker/peer/unmapped_ids.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
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

// The most ranges an id map holds: the kernel takes no more
// (UID_GID_MAP_MAX_EXTENTS).
constexpr size_t kMaxIdRanges = 340;

// The most an id map can hold: kMaxIdRanges ranges, each written as three
// 10-wide numbers ("%10u %10u %10u\n", 33 bytes).
constexpr size_t kMaxIdFileBytes = 16 * 1024;

// The ids of a namespace: 0 to 4294967294. (uid_t)-1 is no id: the
// initial namespace's map, `0 0 4294967295`, ends before it.
constexpr uint64_t kEveryId = UINT32_MAX;

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
// not cover every id; `kind` is "uid" or "gid". The map comes first: the
// sysctl matters only for a partial map, and a /proc mounted with
// subset=pid (systemd's ProcSubset=pid, a common hardening) has no
// /proc/sys, which must not stop a broker that does not need it.
absl::StatusOr<std::optional<uint32_t>> UnmappedOverflowId(absl::string_view kind,
                                                           const char* map_path,
                                                           const char* overflow_path) {
  absl::StatusOr<std::string> map = ReadIdFile(map_path);
  // A kernel without user namespaces (CONFIG_USER_NS) has no id maps: all
  // runs in the initial one, which maps every id. (The caller has checked
  // that /proc is there and the broker's own: daemon/environment.h.)
  if (absl::IsNotFound(map.status())) return std::nullopt;
  if (!map.ok()) return map.status();
  CB_ASSIGN_OR_RETURN(bool every_id, IdMapCoversEveryId(*map, map_path));
  if (every_id) return std::nullopt;
  absl::StatusOr<uint32_t> overflow = ReadOverflowId(overflow_path);
  if (absl::IsNotFound(overflow.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        overflow.status().message(), ": the broker's user namespace does not map every ", kind,
        " (", map_path, "), and every ", kind, " it leaves out reads as the overflow ", kind,
        ", which the broker must know to refuse clients with it; likely /proc is mounted with "
        "subset=pid (systemd's ProcSubset=pid), which hides /proc/sys: give the broker a full "
        "/proc (ProcSubset=all), or run it in the initial user namespace"));
  }
  if (!overflow.ok()) return overflow.status();
  return *overflow;
}

// The refusal of a peer whose `kind` ("uid" or "gid") reads as the
// overflow id `id`; `holder` is who it stands for ("user" or "group").
absl::Status Unmapped(absl::string_view kind, uint32_t id, absl::string_view holder) {
  return absl::FailedPreconditionError(absl::StrCat(
      "its ", kind, " ", id, " cannot be told apart from ", holder,
      "s the broker's user namespace does not map (that namespace does not map every ", kind,
      ", and each ", holder, " it leaves out reads as the overflow ", kind, " ", id,
      "), so it is refused, even the namespace's own ", kind, " ", id,
      "; run the broker in the initial user namespace or in one that maps every ", kind,
      ", or map the client's ", holder, " into it"));
}

}  // namespace

absl::StatusOr<bool> IdMapCoversEveryId(absl::string_view map, absl::string_view name) {
  // The ranges as [first, end) inside the namespace, then sorted: the
  // kernel writes them in the order they were given, and refuses overlaps,
  // but the walk below does not rely on either.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
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
    if (ranges.size() == kMaxIdRanges) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " holds more than ", kMaxIdRanges, " id ranges: the kernel takes no more"));
    }
    ranges.emplace_back(*inside, *inside + *length);
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;  // ids below it are mapped
  for (const auto& [first, end] : ranges) {
    if (first > covered) return false;  // `covered` is not
    covered = std::max(covered, end);
  }
  return covered >= kEveryId;
}

absl::StatusOr<UnmappedIds> ReadUnmappedIds(const IdFiles& files) {
  UnmappedIds unmapped;
  CB_ASSIGN_OR_RETURN(unmapped.uid,
                      UnmappedOverflowId("uid", files.uid_map, files.overflow_uid));
  CB_ASSIGN_OR_RETURN(unmapped.gid,
                      UnmappedOverflowId("gid", files.gid_map, files.overflow_gid));
  return unmapped;
}

absl::Status CheckIdsMapped(const Credentials& credentials, const UnmappedIds& unmapped) {
  if (unmapped.uid == credentials.uid()) return Unmapped("uid", credentials.uid(), "user");
  if (unmapped.gid == credentials.gid()) return Unmapped("gid", credentials.gid(), "group");
  return absl::OkStatus();
}

}  // namespace capbroker::peer
