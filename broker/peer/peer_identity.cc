#include "broker/peer/peer_identity.h"

#include <signal.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; glibc 2.36's headers predate it.
#endif

namespace capbroker::peer {
namespace {

// Device and inode of the file `fd` (or, with `path`, the file `path`
// relative to `fd`) refers to, from the inode cache: AT_STATX_DONT_SYNC lets
// a network or FUSE file system answer without asking its server.
std::optional<std::pair<dev_t, ino_t>> CachedFileId(int fd, const char* path, int flags) {
  struct statx st;
  if (statx(fd, path, flags | AT_STATX_DONT_SYNC, STATX_INO, &st) != 0 ||
      !(st.stx_mask & STATX_INO)) {
    return std::nullopt;
  }
  return std::make_pair(makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino);
}

// The path of the executable `pid` runs, if that path, looked up in the
// broker's own mount namespace, names the very file the process runs; else
// empty. /proc/PID/exe reads as the path in the process's namespace: a
// process in a namespace of its own can bind-mount any binary over a
// trusted path and read as that path. Comparing device and inode defeats
// that, and also refuses deleted or replaced executables.
//
// Nothing here waits on a file system: this runs in the broker's only
// thread, and a client may run its program from a FUSE or network mount
// whose server stalls. The path is looked up with RESOLVE_CACHED, which
// fails (EAGAIN) rather than ask a file system to revalidate a component,
// and both files are identified from the inode cache. Whatever cannot be
// settled from the caches leaves the exe unknown: exe rules do not match.
// Except a lack of fds (EMFILE, ENFILE) for the walk: that says nothing
// about the peer, and admitting it with its exe unknown for the life of the
// connection would silently take exe-based principals from it, so it is
// kResourceExhausted (the connection is refused, as when SO_PEERPIDFD fails
// so).
absl::StatusOr<std::string> ReadExe(pid_t pid) {
  std::string link = absl::StrCat("/proc/", pid, "/exe");
  char target[4096];
  ssize_t n = readlink(link.c_str(), target, sizeof(target));
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(target)) return std::string();
  std::string path(target, static_cast<size_t>(n));
  std::optional<std::pair<dev_t, ino_t>> running = CachedFileId(AT_FDCWD, link.c_str(), 0);
  if (!running) return std::string();
  // EAGAIN also comes from a rename or mount racing with the walk: Openat2
  // tries again a few times, while a component the caches cannot vouch for
  // fails every try.
  absl::StatusOr<UniqueFd> opened =
      Openat2(AT_FDCWD, path, O_PATH, 0, RESOLVE_CACHED | RESOLVE_NO_MAGICLINKS);
  if (!opened.ok()) {
    const int errnum = OpenatErrno(opened.status());
    if (errnum == EMFILE || errnum == ENFILE) {
      return absl::ResourceExhaustedError(
          "out of fds: cannot open the peer's executable to verify it");
    }
    return std::string();
  }
  const UniqueFd named = *std::move(opened);
  if (CachedFileId(named.get(), "", AT_EMPTY_PATH) != running) return std::string();
  return path;
}

bool PidfdAlive(int pidfd) {
  return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0;
}

}  // namespace

absl::StatusOr<Credentials> PeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_PEERCRED)"));
  }
  return Credentials(fd, cred.uid, cred.gid, cred.pid);
}

absl::StatusOr<Identity> IdentifyPeer(const Credentials& credentials) {
  const int fd = credentials.fd();
  Identity identity;
  identity.uid = credentials.uid();
  identity.gid = credentials.gid();
  identity.pid = credentials.pid();
  // SO_PEERPIDFD gives a pidfd for the process the socket records
  // (sk_peer_pid, fixed at connect()), the one SO_PEERCRED read the pid of:
  // so the pid whose exe is read below is the one it vouches for.
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
    switch (errno) {
      case EMFILE:
      case ENFILE:
        return absl::ResourceExhaustedError(
            "out of fds: cannot take the peer's pidfd to verify it");
      case ENOPROTOOPT:  // kernel before 6.5: no way to verify the pid
      case ENODATA:      // socketpair peer without a recorded pid
      case ESRCH:        // the peer has exited already
      case EINVAL:
        return identity;  // exe unknown: exe rules do not match
      default:
        return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_PEERPIDFD)"));
    }
  }
  UniqueFd owned_pidfd(pidfd);
  absl::StatusOr<std::string> exe = ReadExe(identity.pid);
  if (!exe.ok()) return exe.status();
  if (!exe->empty() && PidfdAlive(owned_pidfd.get())) identity.exe = std::move(exe).value();
  return identity;
}

}  // namespace capbroker::peer
