#include "broker/policy/policy_file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/policy/policy_parser.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {
namespace {

absl::StatusOr<UniqueFd> OpenPolicy(const std::string& path) {
  int fd = RetryEintr([&]() {
    return open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  });
  if (fd < 0 && errno == ELOOP) {
    return absl::FailedPreconditionError(absl::StrCat(
        "policy ", path, " is a symbolic link; name the file itself "
        "(readlink -f ", path, ")"));
  }
  return TakeFd(fd, absl::StrCat("open(policy ", path, ")"));
}

}  // namespace

absl::Status CheckPolicyFileStat(absl::string_view path, const struct stat& st, uid_t euid) {
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("policy ", path, " is ", S_ISDIR(st.st_mode) ? "a directory" : "special",
                     ", not a regular file"));
  }
  if (st.st_uid != 0 && st.st_uid != euid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "policy ", path, " is owned by uid ", st.st_uid, ", not by root or the broker (uid ",
        euid, "); chown root ", path));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "policy %s is writable by other users (mode 0%o); chmod go-w %s", path,
        st.st_mode & 07777, path));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxPolicyBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "policy ", path, " is ", st.st_size, " bytes; the limit is ", kMaxPolicyBytes,
        " bytes (1 MiB)"));
  }
  return absl::OkStatus();
}

absl::Status CheckPolicyDirectoryStat(absl::string_view dir, const struct stat& st,
                                      uid_t euid) {
  if (st.st_uid != 0 && st.st_uid != euid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "directory ", dir, " above the policy is owned by uid ", st.st_uid,
        ", who could replace the policy; keep it in directories owned by root or the "
        "broker (uid ", euid, ")"));
  }
  // Sticky: others may create entries but not rename or remove ours (/tmp).
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "directory %s above the policy is writable by other users (mode 0%o), who could "
        "replace the policy; chmod go-w %s",
        dir, st.st_mode & 07777, dir));
  }
  return absl::OkStatus();
}

namespace {

// Checks every directory from the policy's own up to the root. The parent
// is resolved with realpath, so symlinked directories are checked where
// they really are.
absl::Status CheckPolicyDirectories(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  char resolved[PATH_MAX];
  if (realpath(parent.c_str(), resolved) == nullptr) {
    return ErrnoStatus(errno, absl::StrCat("realpath(", parent, ")"));
  }
  std::string dir = resolved;
  uid_t euid = geteuid();
  for (;;) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", dir));
    CB_RETURN_IF_ERROR(CheckPolicyDirectoryStat(dir, st, euid));
    if (dir == "/") return absl::OkStatus();
    size_t up = dir.rfind('/');
    dir = up == 0 ? "/" : dir.substr(0, up);
  }
}

// Reads to end of file, but never more than kMaxPolicyBytes: the size from
// fstat is only a hint (the file may grow, and /proc files report 0).
absl::StatusOr<std::string> ReadAll(int fd, const std::string& path) {
  std::string text(kMaxPolicyBytes + 1, '\0');
  size_t length = 0;
  while (length < text.size()) {
    ssize_t n = RetryEintr([&]() { return read(fd, &text[length], text.size() - length); });
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(policy ", path, ")"));
    if (n == 0) break;
    length += static_cast<size_t>(n);
  }
  if (length > kMaxPolicyBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "policy ", path, " is larger than the limit of ", kMaxPolicyBytes,
        " bytes (1 MiB)"));
  }
  text.resize(length);
  return text;
}

}  // namespace

absl::StatusOr<Policy> LoadPolicyFile(absl::string_view path_view) {
  std::string path(path_view);
  CB_ASSIGN_OR_RETURN(UniqueFd fd, OpenPolicy(path));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat(policy ", path, ")"));
  }
  CB_RETURN_IF_ERROR(CheckPolicyFileStat(path, st, geteuid()));
  CB_RETURN_IF_ERROR(CheckPolicyDirectories(path));
  CB_ASSIGN_OR_RETURN(std::string text, ReadAll(fd.get(), path));
  return ParsePolicy(text, path);
}

}  // namespace capbroker
