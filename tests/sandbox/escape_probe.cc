// escape_probe: run INSIDE the sandbox; tries to get out, and uses its grants.
//
// Prints one line per attempt, "<attempt>: blocked (<errno text>)" or
// "<attempt>: ESCAPED (<what worked>)", one line per grant or other use that
// must keep working, "[grant ]<name>: works (...)" or
// "[grant ]<name>: BROKEN (...)", an "env:" line
// with the socket-activation variables, and "done" at the end.
// confinement_test.cc reads the lines and asserts on each.
//
// Flags (all optional):
//   --host-pid=N          a process outside the sandbox (signal, ptrace)
//   --host-file=PATH      a file on the host (read, write, create beside it);
//                         repeatable
//   --secret=NAME         a file in the parent directory of the "dir" grant
//   --unix-socket=PATH    a pathname unix socket listening on the host
//   --sibling-socket=NAME the same socket's name beside the "dir" grant
//   --abstract-socket=N   an abstract unix socket listening on the host
//   --tcp-port=N          a TCP listener on the host's 127.0.0.1
//   --udp-port=N          a UDP socket on the host's 127.0.0.1
//   --shm-id=N            a SysV shared memory segment of the host's ipc
//                         namespace, mode 0666 (shmat)
//   --net-only            only look for a usable interface ("interfaces:
//                         ...") and try --tcp-port and --udp-port, then
//                         print "done": for a service allowed inet, which
//                         only its network namespace keeps from the host
//   --broker-directory=NAME  its directory grant NAME, asked for again at run
//                         time on its broker connection (CAPBROKER_FD), by
//                         acquire and by an open beneath it of "sub": a
//                         directory fd from the broker lives in the host's
//                         mount namespace, where ".." leaves the sandbox
//   --list-fds            only print the "fds:" line, then "done"
//   --stay                with --list-fds, then read its broker connection
//                         (CAPBROKER_FD) until the broker closes it, so that
//                         connections handed to it find it running
//   --session-key=DESC    only look for the "user" key DESC in the session
//                         keyring and print "session-key: ..." (needs
//                         systemCallFilter off)
//   --connect-only=PATH   only try to connect (SOCK_SEQPACKET, as the
//                         broker's socket is) to the pathname unix socket
//                         PATH ("unix-connect PATH: ..."), then print
//                         "done"; repeatable
//   --count-forks         only fork children that wait for it, until fork
//                         fails (at most 4096), and print "forks: N, then
//                         <errno text>", then "done"
//   --describe=PATH       with or without --connect-only, only print what the
//                         service finds at PATH ("describe PATH: regular
//                         file, mode 0444, 0 bytes, dev:ino 0:52:3,
//                         read-only mount", or "describe PATH: blocked
//                         (...)"), then "done"; repeatable
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sdk/base/unique_fd.h"
#include "sdk/client/client.h"

namespace {

struct Flags {
  pid_t host_pid = 0;
  std::vector<std::string> host_files;
  std::string secret;
  std::string unix_socket;
  std::string sibling_socket;
  std::string abstract_socket;
  int tcp_port = 0;
  int udp_port = 0;
  int shm_id = -1;
  bool net_only = false;
  std::string broker_directory;
  bool list_fds = false;
  bool stay = false;
  bool count_forks = false;
  std::string session_key;
  std::vector<std::string> connect_only;
  std::vector<std::string> describe;
};

void BlockedBecause(const std::string& attempt, const std::string& why) {
  printf("%s: blocked (%s)\n", attempt.c_str(), why.c_str());
}

void Blocked(const std::string& attempt, int err) { BlockedBecause(attempt, strerror(err)); }

void Escaped(const std::string& attempt, const std::string& what) {
  printf("%s: ESCAPED (%s)\n", attempt.c_str(), what.c_str());
}

// For calls that return -1 and set errno when blocked.
void Expect(const std::string& attempt, long result, const std::string& what) {
  if (result < 0) {
    Blocked(attempt, errno);
  } else {
    Escaped(attempt, what);
  }
}

void TryOpen(const std::string& attempt, int dirfd, const std::string& path, int flags) {
  int fd = openat(dirfd, path.c_str(), flags | O_CLOEXEC, 0666);
  int err = errno;
  if (fd >= 0) close(fd);
  errno = err;
  Expect(attempt, fd, "opened " + path);
}

// Creating "../outside-grant" from the directory grant. When ".." stays in
// the grant (at the top of a detached mount it does), the file lands inside
// the grant, which is allowed: only a file outside it is an escape.
void TryCreateAbove(int dirfd) {
  int fd = openat(dirfd, "../outside-grant", O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    Blocked("dotdot-create", errno);
    return;
  }
  struct stat created, inside;
  bool stayed = fstat(fd, &created) == 0 && fstatat(dirfd, "outside-grant", &inside, 0) == 0 &&
                created.st_ino == inside.st_ino && created.st_dev == inside.st_dev;
  close(fd);
  if (stayed) {
    unlinkat(dirfd, "outside-grant", 0);
    printf("dotdot-create: blocked ('..' stayed in the grant)\n");
  } else {
    Escaped("dotdot-create", "created ../outside-grant");
  }
}

void TryConnect(const std::string& attempt, const sockaddr* addr, socklen_t len, int family,
                int type) {
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Blocked(attempt, errno);
    return;
  }
  int rc = connect(fd, addr, len);
  int err = errno;
  if (rc == 0 && type == SOCK_DGRAM) {
    // connect() on UDP succeeds without a peer: a datagram tells.
    rc = static_cast<int>(send(fd, "x", 1, 0));
    err = errno;
  }
  close(fd);
  errno = err;
  Expect(attempt, rc, "connected");
}

void TryUnix(const std::string& attempt, const std::string& path, bool abstract,
             int type = SOCK_STREAM) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  size_t offset = abstract ? 1 : 0;
  if (path.size() + offset >= sizeof addr.sun_path) {
    Blocked(attempt, ENAMETOOLONG);
    return;
  }
  memcpy(addr.sun_path + offset, path.data(), path.size());
  socklen_t len = offsetof(sockaddr_un, sun_path) + offset + path.size() + (abstract ? 0 : 1);
  TryConnect(attempt, reinterpret_cast<sockaddr*>(&addr), len, AF_UNIX, type);
}

// What is at `path` as the service sees it (following symlinks): its type,
// mode, size, device and inode numbers (those of the host's file, if that
// is what the service reaches) and whether its mount is read-only.
void DescribePath(const std::string& path) {
  const std::string attempt = "describe " + path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    Blocked(attempt, errno);
    return;
  }
  struct statvfs fs;
  const char* mount = statvfs(path.c_str(), &fs) != 0 ? "unknown"
                      : (fs.f_flag & ST_RDONLY) != 0  ? "read-only"
                                                      : "writable";
  const char* type = S_ISREG(st.st_mode)    ? "regular file"
                     : S_ISDIR(st.st_mode)  ? "directory"
                     : S_ISSOCK(st.st_mode) ? "socket"
                                            : "other";
  printf("%s: %s, mode %04o, %lld bytes, dev:ino %u:%u:%llu, %s mount\n", attempt.c_str(), type,
         static_cast<unsigned>(st.st_mode & 07777), static_cast<long long>(st.st_size),
         major(st.st_dev), minor(st.st_dev), static_cast<unsigned long long>(st.st_ino), mount);
}

void TryInet(const std::string& attempt, int type, int port) {
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  TryConnect(attempt, reinterpret_cast<sockaddr*>(&addr), sizeof addr, AF_INET, type);
}

std::string Env(const char* name) {
  const char* value = getenv(name);
  return value == nullptr ? "<unset>" : value;
}

// The fds named in LISTEN_FDNAMES, from 3 on.
std::map<std::string, int> GrantedFds() {
  std::map<std::string, int> fds;
  const char* names = getenv("LISTEN_FDNAMES");
  int fd = 3;
  std::string rest = names == nullptr ? "" : names;
  while (!rest.empty()) {
    size_t colon = rest.find(':');
    fds[rest.substr(0, colon)] = fd++;
    rest = colon == std::string::npos ? "" : rest.substr(colon + 1);
  }
  return fds;
}

std::vector<int> OpenFds() {
  std::vector<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  int own = dirfd(dir);
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = atoi(entry->d_name);
    if (fd != own) fds.push_back(fd);
  }
  closedir(dir);
  return fds;
}

void PrintFds() {
  printf("fds:");
  for (int fd : OpenFds()) printf(" %d", fd);
  printf("\n");
}

void CheckFdCount() {
  int expected = 3 + atoi(Env("LISTEN_FDS").c_str());
  if (getenv("CAPBROKER_FD") != nullptr) ++expected;
  std::string extra;
  for (int fd : OpenFds()) {
    if (fd >= expected) extra += " " + std::to_string(fd);
  }
  if (extra.empty()) {
    printf("leaked-fds: blocked (only 0 to %d open)\n", expected - 1);
  } else {
    Escaped("leaked-fds", "also open:" + extra);
  }
}

void UseGrants(const std::map<std::string, int>& grants) {
  auto file = grants.find("file");
  if (file != grants.end()) {
    char buffer[256];
    ssize_t n = pread(file->second, buffer, sizeof buffer - 1, 0);
    if (n >= 0) {
      buffer[n] = '\0';
      printf("grant file: works (read \"%s\")\n", buffer);
    } else {
      printf("grant file: BROKEN (%s)\n", strerror(errno));
    }
  }
  auto dir = grants.find("dir");
  if (dir != grants.end()) {
    int fd = openat(dir->second, "created-by-probe", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const char text[] = "written in the sandbox";
    if (fd >= 0 && write(fd, text, sizeof text - 1) == sizeof text - 1) {
      printf("grant dir: works (created created-by-probe)\n");
    } else {
      printf("grant dir: BROKEN (%s)\n", strerror(errno));
    }
    if (fd >= 0) close(fd);
  }
  const char* broker = getenv("CAPBROKER_FD");
  if (broker != nullptr) {
    const char message[] = "hello broker";
    if (send(atoi(broker), message, sizeof message - 1, 0) == sizeof message - 1) {
      printf("grant broker: works (sent a datagram)\n");
    } else {
      printf("grant broker: BROKEN (%s)\n", strerror(errno));
    }
  }
}

// A capability the broker handed over at run time must not be a directory.
void ExpectNoDirectory(const std::string& attempt,
                       const absl::StatusOr<capbroker::Capability>& got) {
  if (!got.ok()) {
    BlockedBecause(attempt, std::string(got.status().message()));
    return;
  }
  struct stat st;
  if (fstat(got->fd.get(), &st) == 0 && S_ISDIR(st.st_mode)) {
    Escaped(attempt, "got a directory fd from the broker");
  } else {
    BlockedBecause(attempt, "not a directory");
  }
}

void TryBrokerDirectory(const std::string& name) {
  const char* broker = getenv("CAPBROKER_FD");
  if (broker == nullptr) {
    printf("broker-acquire %s: BROKEN (no CAPBROKER_FD)\n", name.c_str());
    return;
  }
  // A copy: the broker connection at CAPBROKER_FD is still used below.
  int copy = fcntl(atoi(broker), F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    printf("broker-acquire %s: BROKEN (dup: %s)\n", name.c_str(), strerror(errno));
    return;
  }
  absl::StatusOr<capbroker::Client> client = capbroker::Client::FromFd(capbroker::UniqueFd(copy));
  if (!client.ok()) {
    printf("broker-acquire %s: BROKEN (%s)\n", name.c_str(),
           std::string(client.status().message()).c_str());
    return;
  }
  ExpectNoDirectory("broker-acquire " + name, client->Acquire(name));
  ExpectNoDirectory("broker-open-beneath " + name + "/sub", client->OpenBeneath(name, "sub"));
}

void CheckPrivileges() {
  FILE* status = fopen("/proc/self/status", "re");
  if (status == nullptr) {
    Escaped("privileges", std::string("cannot read /proc/self/status: ") + strerror(errno));
    return;
  }
  char line[256];
  std::string bad;
  while (fgets(line, sizeof line, status) != nullptr) {
    std::string l(line);
    if (l.rfind("Cap", 0) == 0 && l.find("0000000000000000") == std::string::npos) bad += l;
    if (l.rfind("NoNewPrivs:", 0) == 0 && l.find('1') == std::string::npos) bad += l;
  }
  fclose(status);
  if (bad.empty()) {
    printf("privileges: blocked (no capabilities, no_new_privs set)\n");
  } else {
    Escaped("privileges", bad);
  }
}

void TryFilesystem(const Flags& flags, const std::map<std::string, int>& grants) {
  for (const std::string& path : flags.host_files) {
    TryOpen("read-host " + path, AT_FDCWD, path, O_RDONLY);
    TryOpen("write-host " + path, AT_FDCWD, path, O_WRONLY);
    std::string dir = path.substr(0, path.rfind('/'));
    TryOpen("create-host " + dir, AT_FDCWD, dir + "/created-by-probe", O_WRONLY | O_CREAT);
  }
  // The minimal root's own directories. / and /dev are tmpfs the service's
  // uid owns: only their read-only flags and Landlock refuse these.
  TryOpen("write-root", AT_FDCWD, "/probe-was-here", O_WRONLY | O_CREAT);
  Expect("mkdir-root", mkdir("/probe-was-here.d", 0755), "made /probe-was-here.d");
  TryOpen("write-dev", AT_FDCWD, "/dev/probe-was-here", O_WRONLY | O_CREAT);
  TryOpen("write-usr", AT_FDCWD, "/usr/probe-was-here", O_WRONLY | O_CREAT);
  TryOpen("write-etc", AT_FDCWD, "/etc/probe-was-here", O_WRONLY | O_CREAT);
  TryOpen("write-etc-passwd", AT_FDCWD, "/etc/passwd", O_WRONLY);

  auto file = grants.find("file");
  if (file != grants.end()) {
    TryOpen("reopen-file-grant-for-write", AT_FDCWD,
            "/proc/self/fd/" + std::to_string(file->second), O_WRONLY);
  }
  auto dir = grants.find("dir");
  if (dir != grants.end() && !flags.secret.empty()) {
    int d = dir->second;
    TryOpen("dotdot-read", d, "../" + flags.secret, O_RDONLY);
    TryCreateAbove(d);
    struct stat st;
    Expect("dotdot-stat", fstatat(d, ("../" + flags.secret).c_str(), &st, 0), "stat worked");
    TryOpen("proc-fd-dotdot-read", AT_FDCWD,
            "/proc/self/fd/" + std::to_string(d) + "/../" + flags.secret, O_RDONLY);
    TryOpen("symlink-relative", d, "link-relative", O_RDONLY);
    TryOpen("symlink-absolute", d, "link-absolute", O_RDONLY);
    // A symlink the service makes itself, in its own grant.
    if (symlinkat(("../" + flags.secret).c_str(), d, "probe-link") == 0) {
      TryOpen("symlink-own", d, "probe-link", O_RDONLY);
      unlinkat(d, "probe-link", 0);
    } else {
      printf("grant dir: BROKEN (symlinkat: %s)\n", strerror(errno));
    }
    if (!flags.sibling_socket.empty()) {
      TryUnix("unix-connect-via-grant",
              "/proc/self/fd/" + std::to_string(d) + "/../" + flags.sibling_socket, false);
    }
  }
}

// The interfaces an inet socket finds: those with an IPv4 address
// (SIOCGIFCONF), and whether "lo" is up. In a network namespace of its own
// the service has only "lo", down and without an address.
void FindInterfaces() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Blocked("interfaces", errno);
    return;
  }
  ifreq requests[32] = {};
  ifconf conf = {};
  conf.ifc_len = sizeof requests;
  conf.ifc_req = requests;
  std::string usable;
  if (ioctl(fd, SIOCGIFCONF, &conf) != 0) {
    printf("interfaces: BROKEN (SIOCGIFCONF: %s)\n", strerror(errno));
    close(fd);
    return;
  }
  for (size_t i = 0; i < conf.ifc_len / sizeof(ifreq); ++i) {
    usable += std::string(" ") + requests[i].ifr_name + " (has an address)";
  }
  ifreq lo = {};
  strcpy(lo.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &lo) == 0 && (lo.ifr_flags & IFF_UP) != 0) usable += " lo (up)";
  close(fd);
  if (usable.empty()) {
    BlockedBecause("interfaces", "lo down, none with an address");
  } else {
    Escaped("interfaces", "usable:" + usable);
  }
}

// The ipc namespace's: a SysV segment of the host's, open to every uid.
void TrySysvShm(int id) {
  void* at = shmat(id, nullptr, SHM_RDONLY);
  if (at == reinterpret_cast<void*>(-1)) {
    Blocked("sysv-shm-attach", errno);
    return;
  }
  shmdt(at);
  Escaped("sysv-shm-attach", "attached the host's segment");
}

// The namespaces it is in, by the inode numbers of /proc/self/ns/*, one
// "ns NAME: INODE" line each, for the test to compare with its own.
void PrintNamespaces() {
  for (const char* name : {"ipc", "net", "uts", "mnt", "pid", "user"}) {
    struct stat st;
    std::string path = std::string("/proc/self/ns/") + name;
    if (stat(path.c_str(), &st) != 0) {
      printf("ns %s: BROKEN (%s)\n", name, strerror(errno));
    } else {
      printf("ns %s: %llu\n", name, static_cast<unsigned long long>(st.st_ino));
    }
  }
}

void TryNetwork(const Flags& flags) {
  if (!flags.unix_socket.empty()) TryUnix("unix-connect-host-path", flags.unix_socket, false);
  if (!flags.abstract_socket.empty()) TryUnix("unix-connect-abstract", flags.abstract_socket, true);
  if (flags.tcp_port != 0) TryInet("tcp-connect", SOCK_STREAM, flags.tcp_port);
  if (flags.udp_port != 0) TryInet("udp-send", SOCK_DGRAM, flags.udp_port);
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) close(fd);
  Expect("tcp6-socket", fd, "socket(AF_INET6) created");
  fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd >= 0) close(fd);
  Expect("netlink-socket", fd, "socket(AF_NETLINK) created");
  int pair[2];
  long rc = socketpair(AF_INET, SOCK_STREAM, 0, pair);
  if (rc == 0) {
    close(pair[0]);
    close(pair[1]);
  }
  Expect("socketpair-inet", rc, "socketpair(AF_INET) created");
}

void TryProcesses(const Flags& flags) {
  if (flags.host_pid > 0) {
    Expect("signal-host", kill(flags.host_pid, 0), "kill(host pid, 0) succeeded");
    Expect("ptrace-host", ptrace(PTRACE_ATTACH, flags.host_pid, nullptr, nullptr),
           "PTRACE_ATTACH succeeded");
  }
  // Signal 0: if this escaped, a real signal would have reached processes
  // outside.
  Expect("kill-all", kill(-1, 0), "kill(-1, 0) reached a process");
  Expect("mount", mount("tmpfs", "/tmp", "tmpfs", 0, nullptr), "mounted a tmpfs");
  Expect("chroot", chroot("/tmp"), "chroot succeeded");
  Expect("unshare-user", unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER) succeeded");
  Expect("unshare-net", unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET) succeeded");
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(pid, nullptr, 0);
  Expect("clone-newuser", pid, "clone(CLONE_NEWUSER) made a child");
  Expect("clone3", syscall(SYS_clone3, nullptr, 0), "clone3 was not filtered");
  Expect("setuid-0", setuid(0), "setuid(0) succeeded");
  Expect("setns", setns(0, 0), "setns succeeded");
  Expect("io-uring", syscall(SYS_io_uring_setup, 1, nullptr), "io_uring_setup succeeded");
  Expect("bpf", syscall(SYS_bpf, 0, nullptr, 0), "bpf succeeded");
  Expect("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0), "keyctl succeeded");
  Expect("personality", personality(ADDR_NO_RANDOMIZE), "personality changed");
  char c = 'x';
  Expect("tiocsti", ioctl(0, TIOCSTI, &c), "TIOCSTI accepted");
  CheckPrivileges();
}

// Files in the writable grant that keep a setuid or setgid bit: on the host,
// whoever runs them would act as the services' uid. Each call that takes a
// mode is tried; a plain mode must still work.
void TrySetIdBits(const std::map<std::string, int>& grants) {
  auto dir = grants.find("dir");
  if (dir == grants.end()) return;
  int d = dir->second;
  // The path calls (chmod, open, creat) reach the grant through its fd.
  std::string path = "/proc/self/fd/" + std::to_string(d) + "/";
  int fd = openat(d, "setid-target", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    printf("grant dir-modes: BROKEN (%s)\n", strerror(errno));
    return;
  }
  Expect("setuid-fchmod", fchmod(fd, 04755), "fchmod(04755) succeeded");
  Expect("setgid-fchmodat", fchmodat(d, "setid-target", 02755, 0), "fchmodat(02755) succeeded");
  Expect("setuid-fchmodat2", syscall(452 /* fchmodat2 */, d, "setid-target", 04755, 0),
         "fchmodat2(04755) succeeded");
  Expect("setuid-chmod", syscall(SYS_chmod, (path + "setid-target").c_str(), 04755),
         "chmod(04755) succeeded");
  struct stat st;
  if (fchmod(fd, 0600) == 0 && fchmodat(d, "setid-target", 0644, 0) == 0 &&
      fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0644) {
    printf("grant dir-modes: works (fchmod 0600, fchmodat 0644)\n");
  } else {
    printf("grant dir-modes: BROKEN (%s)\n", strerror(errno));
  }
  close(fd);
  auto try_create = [](const std::string& attempt, long fd) {
    int err = errno;
    if (fd >= 0) close(static_cast<int>(fd));
    errno = err;
    Expect(attempt, fd, "created a file with the bit");
  };
  try_create("setuid-openat",
             openat(d, "setid-openat", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 04755));
  try_create("setgid-open", syscall(SYS_open, (path + "setid-open").c_str(),
                                    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 02755));
  try_create("setuid-creat", syscall(SYS_creat, (path + "setid-creat").c_str(), 04755));
  Expect("setuid-mknodat", mknodat(d, "setid-mknodat", S_IFREG | 04755, 0),
         "mknodat(S_IFREG | 04755) succeeded");
  open_how how = {};
  how.flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  how.mode = 04755;
  try_create("setuid-openat2", syscall(SYS_openat2, d, "setid-openat2", &how, sizeof how));
  // An unnamed file, named afterwards through its /proc/self/fd link.
  fd = openat(d, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 04755);
  if (fd < 0) {
    Blocked("setuid-tmpfile", errno);
    return;
  }
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  if (linkat(AT_FDCWD, link.c_str(), d, "setid-tmpfile", AT_SYMLINK_FOLLOW) == 0) {
    Escaped("setuid-tmpfile", "linked an O_TMPFILE file made with 04755");
  } else {
    Escaped("setuid-tmpfile", std::string("O_TMPFILE with 04755 (linkat: ") + strerror(errno) +
                                  ")");
  }
  close(fd);
}

// The parent-death signal ends the service with the broker: it cannot be
// cleared, nor changed to a signal that pid 1 of a pid namespace ignores
// (any other at its default action), and setting SIGKILL again works.
void TryParentDeathSignal() {
  Expect("pdeathsig-clear", prctl(PR_SET_PDEATHSIG, 0UL, 0UL, 0UL, 0UL),
         "prctl(PR_SET_PDEATHSIG, 0) succeeded");
  Expect("pdeathsig-sigterm", prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGTERM), 0UL,
                                    0UL, 0UL),
         "prctl(PR_SET_PDEATHSIG, SIGTERM) succeeded");
  int signal = 0;
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(SIGKILL), 0UL, 0UL, 0UL) != 0 ||
      prctl(PR_GET_PDEATHSIG, &signal, 0UL, 0UL, 0UL) != 0) {
    printf("pdeathsig-sigkill: BROKEN (%s)\n", strerror(errno));
  } else if (signal != SIGKILL) {
    printf("pdeathsig-sigkill: BROKEN (reads back %d)\n", signal);
  } else {
    printf("pdeathsig-sigkill: works (set and read back)\n");
  }
}

// A script written to the private /tmp must not run (noexec, and Landlock
// grants no execute there).
void TryExecFromTmp() {
  const char script[] = "#!/bin/sh\nexit 0\n";
  int fd = open("/tmp/probe.sh", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (fd < 0 || write(fd, script, sizeof script - 1) != sizeof script - 1) {
    printf("tmp: BROKEN (%s)\n", strerror(errno));
    return;
  }
  close(fd);
  pid_t pid = fork();
  if (pid == 0) {
    char* argv[] = {const_cast<char*>("/tmp/probe.sh"), nullptr};
    execve(argv[0], argv, environ);
    _exit(errno);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 0) {
    Escaped("exec-from-tmp", "ran /tmp/probe.sh");
  } else {
    Blocked("exec-from-tmp", code);
  }
}

// Looks for a "user" key named `description` in the session keyring (@s)
// and prints what it holds: the broker's keys must stay out of reach
// (needs systemCallFilter off: the filter denies keyctl).
void ReadSessionKey(const std::string& description) {
  long key = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user",
                     description.c_str(), 0);
  if (key < 0) {
    printf("session-key: not found (%s)\n", strerror(errno));
    return;
  }
  char payload[256] = {};
  long n = syscall(SYS_keyctl, KEYCTL_READ, key, payload, sizeof payload - 1);
  if (n < 0) {
    printf("session-key: found, unreadable (%s)\n", strerror(errno));
    return;
  }
  printf("session-key: found '%.*s'\n", static_cast<int>(std::min<long>(n, sizeof payload - 1)),
         payload);
}

// Forks children that wait (on a pipe) until it is done counting, until
// fork fails, and reaps them: how many processes its limit lets it have.
// Bounded, so that a missing limit ends the count and not the host.
void CountForks() {
  constexpr int kMaxForks = 4096;
  int hold[2];
  if (pipe2(hold, O_CLOEXEC) != 0) {
    printf("forks: BROKEN (pipe2: %s)\n", strerror(errno));
    return;
  }
  int forks = 0;
  int err = 0;
  for (; forks < kMaxForks; ++forks) {
    pid_t pid = fork();
    if (pid < 0) {
      err = errno;
      break;
    }
    if (pid == 0) {
      close(hold[1]);
      char c;
      while (read(hold[0], &c, 1) < 0 && errno == EINTR) {
      }
      _exit(0);
    }
  }
  close(hold[1]);
  while (wait(nullptr) > 0) {
  }
  close(hold[0]);
  printf("forks: %d, then %s\n", forks, err != 0 ? strerror(err) : "stopped at the bound");
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      size_t n = strlen(name);
      return arg.compare(0, n, name) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--host-pid=")) flags.host_pid = atoi(v);
    else if (const char* v = value("--host-file=")) flags.host_files.push_back(v);
    else if (const char* v = value("--secret=")) flags.secret = v;
    else if (const char* v = value("--unix-socket=")) flags.unix_socket = v;
    else if (const char* v = value("--sibling-socket=")) flags.sibling_socket = v;
    else if (const char* v = value("--abstract-socket=")) flags.abstract_socket = v;
    else if (const char* v = value("--tcp-port=")) flags.tcp_port = atoi(v);
    else if (const char* v = value("--udp-port=")) flags.udp_port = atoi(v);
    else if (const char* v = value("--shm-id=")) flags.shm_id = atoi(v);
    else if (arg == "--net-only") flags.net_only = true;
    else if (const char* v = value("--broker-directory=")) flags.broker_directory = v;
    else if (const char* v = value("--session-key=")) flags.session_key = v;
    else if (arg == "--list-fds") flags.list_fds = true;
    else if (arg == "--stay") flags.stay = true;
    else if (arg == "--count-forks") flags.count_forks = true;
    else if (const char* v = value("--connect-only=")) flags.connect_only.push_back(v);
    else if (const char* v = value("--describe=")) flags.describe.push_back(v);
    else fprintf(stderr, "escape_probe: unknown flag %s\n", argv[i]);
  }
  return flags;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  Flags flags = ParseFlags(argc, argv);
  if (!flags.session_key.empty()) {
    ReadSessionKey(flags.session_key);
    return 0;
  }
  if (flags.net_only) {
    FindInterfaces();
    if (flags.tcp_port != 0) TryInet("tcp-connect", SOCK_STREAM, flags.tcp_port);
    if (flags.udp_port != 0) TryInet("udp-send", SOCK_DGRAM, flags.udp_port);
    printf("done\n");
    return 0;
  }
  if (flags.count_forks) {
    CountForks();
    printf("done\n");
    return 0;
  }
  if (flags.list_fds) {
    PrintFds();
    printf("done\n");
    const char* broker = getenv("CAPBROKER_FD");
    if (flags.stay && broker != nullptr) {
      char buf[4096];
      while (read(atoi(broker), buf, sizeof buf) > 0) {
      }
    }
    return 0;
  }
  if (!flags.connect_only.empty() || !flags.describe.empty()) {
    for (const std::string& path : flags.connect_only) {
      TryUnix("unix-connect " + path, path, false, SOCK_SEQPACKET);
    }
    for (const std::string& path : flags.describe) DescribePath(path);
    printf("done\n");
    return 0;
  }
  printf("env: LISTEN_FDS=%s LISTEN_PID=%s LISTEN_FDNAMES=%s CAPBROKER_FD=%s pid=%d\n",
         Env("LISTEN_FDS").c_str(), Env("LISTEN_PID").c_str(), Env("LISTEN_FDNAMES").c_str(),
         Env("CAPBROKER_FD").c_str(), getpid());
  PrintFds();
  PrintNamespaces();
  CheckFdCount();
  std::map<std::string, int> grants = GrantedFds();
  // Before UseGrants, whose datagram is no request the broker would answer.
  if (!flags.broker_directory.empty()) TryBrokerDirectory(flags.broker_directory);
  UseGrants(grants);
  TryFilesystem(flags, grants);
  TrySetIdBits(grants);
  TryNetwork(flags);
  if (flags.shm_id >= 0) TrySysvShm(flags.shm_id);
  TryProcesses(flags);
  TryParentDeathSignal();
  TryExecFromTmp();
  printf("done\n");
  return 0;
}
