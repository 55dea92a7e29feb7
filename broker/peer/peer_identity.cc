#include "broker/peer/peer_identity.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; glibc 2.36's headers predate it.
#endif

namespace capbroker::peer {
namespace {

// The path of the executable `pid` runs, if that path, looked up in the
// broker's own mount namespace, names the very file the process runs; else
// empty. /proc/PID/exe reads as the path in the process's namespace: a
// process in a namespace of its own can bind-mount any binary over a
// trusted path and read as that path. Comparing device and inode defeats
// that, and also refuses deleted or replaced executables.
std::string ReadExe(pid_t pid) {
  std::string link = absl::StrCat("/proc/", pid, "/exe");
  char target[4096];
  ssize_t n = readlink(link.c_str(), target, sizeof(target));
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(target)) return "";
  std::string path(target, static_cast<size_t>(n));
  struct stat running, named;
  if (stat(link.c_str(), &running) != 0 || stat(path.c_str(), &named) != 0) return "";
  if (running.st_dev != named.st_dev || running.st_ino != named.st_ino) return "";
  return path;
}

bool PidfdAlive(int pidfd) {
  return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0;
}

}  // namespace

absl::StatusOr<Identity> IdentifyPeer(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoStatus(errno, absl::StrCat("getsockopt(fd=", fd, ", SO_PEERCRED)"));
  }
  Identity identity;
  identity.uid = cred.uid;
  identity.gid = cred.gid;
  identity.pid = cred.pid;

  int pidfd = -1;
  len = sizeof(pidfd);
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
  std::string exe = ReadExe(cred.pid);
  if (!exe.empty() && PidfdAlive(owned_pidfd.get())) identity.exe = std::move(exe);
  return identity;
}

}  // namespace capbroker::peer
