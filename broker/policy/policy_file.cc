#include "broker/policy/policy_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "broker/policy/policy_parser.h"
#include "broker/util/trusted_path.h"
#include "sdk/base/escape.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

namespace capbroker {
namespace {

// The policy's path as given (capctl policy check's argument, --policy) as
// a message names it: on one line whatever it holds, in its own language.
// Escaped here, where it enters the message (as broker/util/trusted_path
// escapes what it quotes), so that every printer (the broker's stderr,
// capctl status, capctl policy check) shows it safely.
std::string Shown(absl::string_view path) { return EscapedKeepingUtf8(path); }

// The policy's own directory, besides the walk's rule for every directory
// (CheckTraversedDirectoryStat): not writable by group or others, even if
// sticky. The sticky bit keeps others from renaming or removing the policy,
// but not from adding a name: whenever the policy's is free (an editor
// saving by rename, root removing the file), any of them may rename into
// it a file of root's they hold (a hard link, or a file root wrote into a
// directory of theirs), which passes every check on the file. The
// directories above may stay sticky: a directory can be moved to another
// parent only by one who may write it, so no one else can put one of
// root's in place of a name there.
absl::Status CheckPolicyDirectoryStat(const std::string& dir, const struct stat& st,
                                      const std::string& path, const std::string& name,
                                      uid_t euid) {
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) == 0) return absl::OkStatus();
  const std::string own = dir == "/" ? "/capbroker" : absl::StrCat(dir, "/capbroker");
  return absl::FailedPreconditionError(absl::StrFormat(
      "directory %s, which holds the policy %s, is writable by other users (mode 0%o, owner "
      "uid %d): even with the sticky bit, whenever the policy's name is free there (an "
      "editor's save, a removal) any of them could rename a file of root's they hold (a hard "
      "link, or one root wrote into a directory of theirs) to it; move the policy into a "
      "directory that only root or uid %d can write (mkdir -m 0755 %s, and load it as "
      "%s/%s); never chmod a shared directory such as /tmp",
      Shown(dir), Shown(path), st.st_mode & 07777, st.st_uid, euid, Shown(own), Shown(own),
      Shown(name)));
}

// Opens the policy relative to its directory, reached by a walk that
// checks every directory and symlink on the way (broker/util/trusted_path.h),
// so that the file opened is the one in the directory checked.
absl::StatusOr<UniqueFd> OpenPolicy(const std::string& path, uid_t euid) {
  util::PathRules rules{euid, absl::StrCat("the policy ", path), std::nullopt};
  CB_ASSIGN_OR_RETURN(util::ResolvedParent parent, util::OpenParent(path, rules));
  // The policy's own directory: the rule of every directory above it, and
  // not writable by others even if sticky (CheckPolicyDirectoryStat).
  CB_RETURN_IF_ERROR(util::CheckTraversedDirectoryStat(parent.dir_path, parent.dir_stat, rules));
  CB_RETURN_IF_ERROR(
      CheckPolicyDirectoryStat(parent.dir_path, parent.dir_stat, path, parent.name, euid));
  int fd = RetryEintr([&]() {
    return openat(parent.dir.get(), parent.name.c_str(),
                  O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  });
  const std::string shown = Shown(path);
  if (fd < 0 && errno == ELOOP) {
    return absl::FailedPreconditionError(absl::StrCat(
        "policy ", shown, " is a symbolic link; name the file itself "
        "(readlink -f ", shown, ")"));
  }
  return TakeFd(fd, absl::StrCat("open(policy ", shown, ")"));
}

}  // namespace

absl::Status CheckPolicyFileStat(absl::string_view path, const struct stat& st, uid_t euid) {
  CB_RETURN_IF_ERROR(util::CheckTrustedFileStat("policy", path, st, euid));
  if (static_cast<uint64_t>(st.st_size) > kMaxPolicyBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "policy ", Shown(path), " is ", st.st_size, " bytes; the limit is ", kMaxPolicyBytes,
        " bytes (1 MiB)"));
  }
  return absl::OkStatus();
}

namespace {

// Reads to end of file, but never more than kMaxPolicyBytes: the size from
// fstat is only a hint (the file may grow, and /proc files report 0).
absl::StatusOr<std::string> ReadAll(int fd, const std::string& path) {
  std::string text(kMaxPolicyBytes + 1, '\0');
  size_t length = 0;
  while (length < text.size()) {
    ssize_t n = RetryEintr([&]() { return read(fd, &text[length], text.size() - length); });
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read(policy ", Shown(path), ")"));
    if (n == 0) break;
    length += static_cast<size_t>(n);
  }
  if (length > kMaxPolicyBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "policy ", Shown(path), " is larger than the limit of ", kMaxPolicyBytes,
        " bytes (1 MiB)"));
  }
  text.resize(length);
  return text;
}

// The policy's text, from the file checked as LoadPolicyFile says.
absl::StatusOr<std::string> ReadPolicy(const std::string& path) {
  uid_t euid = geteuid();
  CB_ASSIGN_OR_RETURN(UniqueFd fd, OpenPolicy(path, euid));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat(policy ", Shown(path), ")"));
  }
  CB_RETURN_IF_ERROR(CheckPolicyFileStat(path, st, euid));
  return ReadAll(fd.get(), path);
}

}  // namespace

absl::StatusOr<std::string> ResolveProgramPath(const std::string& path, bool may_block) {
  return util::ResolveTrustedLinks(path, geteuid(), may_block);
}

absl::Status CheckFollowedCapabilityPath(const std::string& path, bool may_block) {
  return util::CheckFollowedPath(path, geteuid(), may_block);
}

absl::StatusOr<Policy> LoadPolicyFile(absl::string_view path_view,
                                      const BrokerContext& broker) {
  std::string path(path_view);
  absl::StatusOr<std::string> text = ReadPolicy(path);
  // kInvalidArgument says the text is wrong (capctl prints its lines as the
  // parser's, then a count of errors): a file that could not be read never
  // says so, whatever the code of its reason (a path ending in '/', '.' or
  // '..', "/etc/capbroker/", is kInvalidArgument to OpenParent; so is a
  // call's EINVAL).
  if (absl::IsInvalidArgument(text.status())) {
    return absl::FailedPreconditionError(text.status().message());
  }
  if (!text.ok()) return text.status();
  BrokerContext context = broker;
  // The broker's only thread: never waits for a file system.
  if (!context.resolve_program) {
    context.resolve_program = [](const std::string& exe) {
      return ResolveProgramPath(exe, /*may_block=*/false);
    };
  }
  if (!context.check_followed_path) {
    context.check_followed_path = [](const std::string& path) {
      return CheckFollowedCapabilityPath(path, /*may_block=*/false);
    };
  }
  return ParsePolicy(*text, path, context);
}

}  // namespace capbroker
