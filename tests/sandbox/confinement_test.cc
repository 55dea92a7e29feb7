// The sandbox from outside: escape_probe runs inside it, tries to get out
// and uses its grants; every attempt must be blocked and every grant work.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "broker/sandbox/landlock.h"
#include "broker/sandbox/sandbox.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/launched_run.h"

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::Finished;
using ::capbroker::testing::LaunchAndWait;
using ::capbroker::testing::RunfileRealPath;
using ::capbroker::testing::RunToEnd;
using ::capbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uid_t kServiceUid = 65534;  // nobody
constexpr gid_t kServiceGid = 65534;
constexpr char kFileContent[] = "readable grant content";

UniqueFd Listen(int family, int type, const sockaddr* addr, socklen_t len) {
  UniqueFd fd(socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  EXPECT_TRUE(fd.valid()) << strerror(errno);
  EXPECT_EQ(bind(fd.get(), addr, len), 0) << strerror(errno);
  if (type == SOCK_STREAM) {
    EXPECT_EQ(listen(fd.get(), 4), 0) << strerror(errno);
  }
  return fd;
}

// An abstract unix socket (a name in the network namespace, no file)
// listening as `name`.
UniqueFd ListenAbstract(const std::string& name) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(name.size() + 1, sizeof addr.sun_path);
  memcpy(addr.sun_path + 1, name.data(), name.size());
  return Listen(AF_UNIX, SOCK_STREAM, reinterpret_cast<sockaddr*>(&addr),
                offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

// The probe's line for `attempt` ("<attempt>: ..."), or "<attempt>: not run".
std::string LineFor(const std::vector<std::string>& lines, const std::string& attempt) {
  for (const std::string& line : lines) {
    if (line.rfind(attempt + ": ", 0) == 0) return line;
  }
  return attempt + ": not run";
}

int BoundPort(int fd) {
  sockaddr_in addr = {};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// A TCP listener and a UDP socket on the host's loopback, for a probe to
// try to reach.
struct LoopbackListeners {
  LoopbackListeners() {
    sockaddr_in loopback = {};
    loopback.sin_family = AF_INET;
    loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const auto* addr = reinterpret_cast<const sockaddr*>(&loopback);
    tcp = Listen(AF_INET, SOCK_STREAM, addr, sizeof loopback);
    udp = Listen(AF_INET, SOCK_DGRAM, addr, sizeof loopback);
  }
  // The probe's arguments naming their ports.
  std::vector<std::string> ProbeArgs() const {
    return {absl::StrCat("--tcp-port=", BoundPort(tcp.get())),
            absl::StrCat("--udp-port=", BoundPort(udp.get()))};
  }
  // Nothing reached either.
  void ExpectUntouched() const {
    EXPECT_LT(accept(tcp.get(), nullptr, nullptr), 0);
    EXPECT_EQ(errno, EAGAIN);
    char datagram[16];
    EXPECT_LT(recv(udp.get(), datagram, sizeof datagram, MSG_DONTWAIT), 0);
  }

  UniqueFd tcp;
  UniqueFd udp;
};

class ConfinementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "this test runs services as another uid";
    // Permissive modes: what stops the probe must be the sandbox, not DAC.
    ASSERT_EQ(chmod(host_.path().c_str(), 0755), 0);
    secret_ = host_.WriteFile("secret", "host secret", 0666);
    readable_ = host_.WriteFile("readable", kFileContent, 0666);
    granted_ = host_.Join("granted");
    ASSERT_EQ(mkdir(granted_.c_str(), 0777), 0);
    ASSERT_EQ(chmod(granted_.c_str(), 0777), 0);
    ASSERT_EQ(symlink("../secret", (granted_ + "/link-relative").c_str()), 0);
    ASSERT_EQ(symlink(secret_.c_str(), (granted_ + "/link-absolute").c_str()), 0);
    host_files_.push_back(secret_);
    // A directory of the test's own in each: the probe's private /tmp must
    // not be mistaken for the host's.
    for (const char* parent : {"/home", "/root", "/var", "/run", "/tmp"}) {
      std::string dir = absl::StrCat(parent, "/capbroker-probe-", getpid());
      // One there already is a leftover of an earlier process that had this
      // pid (a test killed at its timeout never runs TearDown): no live
      // process has it but this one. Removed, or mkdir fails with EEXIST.
      std::error_code leftover;
      std::filesystem::remove_all(dir, leftover);
      ASSERT_FALSE(leftover) << "removing " << dir << ", left by an earlier process: "
                             << leftover.message();
      ASSERT_EQ(mkdir(dir.c_str(), 0777), 0) << dir << ": " << strerror(errno);
      ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
      created_dirs_.push_back(dir);
      std::string path = dir + "/secret";
      int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
      ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
      fchmod(fd, 0666);
      close(fd);
      host_files_.push_back(path);
    }
  }

  void TearDown() override {
    for (const std::string& dir : created_dirs_) {
      unlink((dir + "/secret").c_str());
      unlink((dir + "/created-by-probe").c_str());
      rmdir(dir.c_str());
    }
  }

  TempDir host_;
  std::string secret_;
  std::string readable_;
  std::string granted_;
  std::vector<std::string> host_files_;
  std::vector<std::string> created_dirs_;
};

// A SysV shared memory segment of the test's ipc namespace, open to every
// uid (0666): only the service's own ipc namespace keeps it out of reach
// (the seccomp filter allows shmat, and Landlock does not cover SysV IPC).
class HostShmSegment {
 public:
  HostShmSegment() : id_(shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0666)) {
    EXPECT_GE(id_, 0) << strerror(errno);
  }
  ~HostShmSegment() {
    if (id_ >= 0) shmctl(id_, IPC_RMID, nullptr);
  }
  int id() const { return id_; }

 private:
  int id_;
};

// The inode of the test's own /proc/self/ns/NAME.
uint64_t OwnNamespace(const std::string& name) {
  struct stat st;
  EXPECT_EQ(stat(("/proc/self/ns/" + name).c_str(), &st), 0) << name << ": " << strerror(errno);
  return st.st_ino;
}

TEST_F(ConfinementTest, EveryEscapeIsBlockedAndEveryGrantWorks) {
  // Listeners the probe must not reach.
  sockaddr_un path_addr = {};
  path_addr.sun_family = AF_UNIX;
  std::string socket_path = host_.Join("sock");
  ASSERT_LT(socket_path.size(), sizeof path_addr.sun_path);
  strcpy(path_addr.sun_path, socket_path.c_str());
  UniqueFd path_listener = Listen(AF_UNIX, SOCK_STREAM, reinterpret_cast<sockaddr*>(&path_addr),
                                  sizeof path_addr);
  ASSERT_EQ(chmod(socket_path.c_str(), 0777), 0);
  std::string abstract_name = absl::StrCat("capbroker-probe-", getpid());
  UniqueFd abstract_listener = ListenAbstract(abstract_name);
  LoopbackListeners loopback;

  // The grants.
  UniqueFd file(open(readable_.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file.valid());
  UniqueFd dir(open(granted_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd broker_end(pair[0]);
  UniqueFd service_end(pair[1]);
  // Inherited by any child of this process: the sandbox must close it.
  UniqueFd leaky(open("/dev/null", O_RDONLY));
  ASSERT_TRUE(leaky.valid());
  HostShmSegment shm;
  ASSERT_GE(shm.id(), 0);

  SandboxSpec spec;
  spec.name = "escape-probe";
  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"),
               absl::StrCat("--host-pid=", getpid()),
               "--secret=secret",
               absl::StrCat("--unix-socket=", socket_path),
               "--sibling-socket=sock",
               absl::StrCat("--abstract-socket=", abstract_name),
               absl::StrCat("--shm-id=", shm.id())};
  for (std::string& arg : loopback.ProbeArgs()) spec.argv.push_back(std::move(arg));
  for (const std::string& path : host_files_) spec.argv.push_back("--host-file=" + path);
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.fds = {{"file", file.get(), false, false}, {"dir", dir.get(), true, true}};
  spec.broker_fd = service_end.get();
  spec.uid = kServiceUid;
  spec.gid = kServiceGid;

  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  service_end.reset();
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  const std::string& out = finished.output;
  EXPECT_TRUE(WIFEXITED(finished.wait_status) && WEXITSTATUS(finished.wait_status) == 0);
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, Contains("done")) << out;
  EXPECT_THAT(out, Not(HasSubstr("ESCAPED")));
  EXPECT_THAT(out, Not(HasSubstr("BROKEN")));

  // The grants, and the environment that announces them.
  EXPECT_EQ(LineFor(lines, "grant file"),
            absl::StrCat("grant file: works (read \"", kFileContent, "\")"));
  EXPECT_EQ(LineFor(lines, "grant dir"), "grant dir: works (created created-by-probe)");
  EXPECT_EQ(LineFor(lines, "grant broker"), "grant broker: works (sent a datagram)");
  EXPECT_EQ(LineFor(lines, "env"),
            "env: LISTEN_FDS=2 LISTEN_PID=1 LISTEN_FDNAMES=file:dir CAPBROKER_FD=5 pid=1");
  // The fd without close-on-exec this test holds is not among them.
  EXPECT_EQ(LineFor(lines, "fds"), "fds: 0 1 2 3 4 5");
  char datagram[64];
  ssize_t n = recv(broker_end.get(), datagram, sizeof datagram, MSG_DONTWAIT);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(datagram, n), "hello broker");
  char written[64] = {};
  UniqueFd created(open((granted_ + "/created-by-probe").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(created.valid());
  ASSERT_GT(read(created.get(), written, sizeof written - 1), 0);
  EXPECT_STREQ(written, "written in the sandbox");

  // Every attempt ran and was blocked.
  std::vector<std::string> attempts = {
      "leaked-fds", "write-root", "mkdir-root", "write-dev", "write-usr", "write-etc",
      "write-etc-passwd", "reopen-file-grant-for-write",
      "dotdot-read", "dotdot-create", "dotdot-stat", "proc-fd-dotdot-read",
      "symlink-relative", "symlink-absolute", "symlink-own", "unix-connect-via-grant",
      "unix-connect-host-path", "unix-connect-abstract", "tcp-connect", "udp-send",
      "tcp6-socket", "netlink-socket", "socketpair-inet", "signal-host", "ptrace-host",
      "kill-all", "mount", "chroot", "unshare-user", "unshare-net", "clone-newuser",
      "clone3", "setuid-0", "setns", "io-uring", "bpf", "keyctl", "personality",
      "tiocsti", "privileges", "exec-from-tmp", "pdeathsig-clear", "pdeathsig-sigterm",
      "setuid-fchmod", "setgid-fchmodat", "setuid-fchmodat2", "setuid-chmod", "setuid-openat",
      "setgid-open", "setuid-creat", "setuid-mknodat", "setuid-openat2", "setuid-tmpfile",
      "sysv-shm-attach"};
  for (const std::string& path : host_files_) {
    std::string dir = path.substr(0, path.rfind('/'));
    attempts.push_back("read-host " + path);
    attempts.push_back("write-host " + path);
    attempts.push_back("create-host " + dir);
  }
  for (const std::string& attempt : attempts) {
    EXPECT_THAT(LineFor(lines, attempt), StartsWith(attempt + ": blocked ("));
  }
  // Every namespace is the service's own, each checked inside it: an inode
  // number unlike the test's own (not a "BROKEN (...)" line, which is
  // unlike it too).
  for (const std::string ns : {"ipc", "net", "uts", "mnt", "pid", "user"}) {
    std::string line = LineFor(lines, "ns " + ns);
    ASSERT_THAT(line, MatchesRegex("ns " + ns + ": [0-9]+")) << out;
    EXPECT_NE(line, absl::StrCat("ns ", ns, ": ", OwnNamespace(ns))) << "same " << ns << " namespace";
  }
  // Which layer stopped a few of them: the ipc namespace (the host's
  // segment id names nothing there), seccomp, the detached directory grant,
  // Landlock.
  EXPECT_EQ(LineFor(lines, "sysv-shm-attach"), "sysv-shm-attach: blocked (Invalid argument)");
  EXPECT_EQ(LineFor(lines, "tcp-connect"),
            "tcp-connect: blocked (Address family not supported by protocol)");
  EXPECT_EQ(LineFor(lines, "ptrace-host"), "ptrace-host: blocked (Operation not permitted)");
  EXPECT_EQ(LineFor(lines, "clone3"), "clone3: blocked (Function not implemented)");
  EXPECT_EQ(LineFor(lines, "dotdot-stat"), "dotdot-stat: blocked (No such file or directory)");
  EXPECT_EQ(LineFor(lines, "unix-connect-via-grant"),
            "unix-connect-via-grant: blocked (No such file or directory)");
  EXPECT_EQ(LineFor(lines, "dotdot-create"), "dotdot-create: blocked ('..' stayed in the grant)");
  EXPECT_EQ(LineFor(lines, "reopen-file-grant-for-write"),
            "reopen-file-grant-for-write: blocked (Permission denied)");
  // The parent-death signal, which ends the service with the broker, stays
  // SIGKILL.
  EXPECT_EQ(LineFor(lines, "pdeathsig-clear"),
            "pdeathsig-clear: blocked (Operation not permitted)");
  EXPECT_EQ(LineFor(lines, "pdeathsig-sigterm"),
            "pdeathsig-sigterm: blocked (Operation not permitted)");
  EXPECT_EQ(LineFor(lines, "pdeathsig-sigkill"), "pdeathsig-sigkill: works (set and read back)");
  // No setuid or setgid program in the writable grant (RestrictSUIDSGID):
  // the seccomp filter refuses the mode, openat2 is hidden (its mode is out
  // of the filter's reach); a plain mode still works.
  for (const char* attempt :
       {"setuid-fchmod", "setgid-fchmodat", "setuid-fchmodat2", "setuid-chmod", "setuid-openat",
        "setgid-open", "setuid-creat", "setuid-mknodat", "setuid-tmpfile"}) {
    EXPECT_EQ(LineFor(lines, attempt), absl::StrCat(attempt, ": blocked (Operation not permitted)"));
  }
  EXPECT_EQ(LineFor(lines, "setuid-openat2"), "setuid-openat2: blocked (Function not implemented)");
  EXPECT_EQ(LineFor(lines, "grant dir-modes"),
            "grant dir-modes: works (fchmod 0600, fchmodat 0644)");
  DIR* granted = opendir(granted_.c_str());
  ASSERT_NE(granted, nullptr);
  while (dirent* entry = readdir(granted)) {
    struct stat st;
    ASSERT_EQ(fstatat(dirfd(granted), entry->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
    EXPECT_EQ(st.st_mode & (S_ISUID | S_ISGID), 0u) << entry->d_name << " mode " << std::oct
                                                     << st.st_mode;
  }
  closedir(granted);

  // Nothing reached the host.
  EXPECT_LT(accept(path_listener.get(), nullptr, nullptr), 0);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_LT(accept(abstract_listener.get(), nullptr, nullptr), 0);
  EXPECT_EQ(errno, EAGAIN);
  loopback.ExpectUntouched();
  for (const std::string& path : host_files_) {
    std::string dir = path.substr(0, path.rfind('/'));
    EXPECT_NE(access((dir + "/created-by-probe").c_str(), F_OK), 0) << dir;
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
  }
  EXPECT_NE(access(host_.Join("outside-grant").c_str(), F_OK), 0);
}

// A service without a network namespace of its own (privateNetwork off)
// shares the host's abstract unix sockets, which have no file for the
// minimal root to leave out: Landlock's scoping (ABI 6) is what keeps it
// from connecting to them. With a network namespace, the probe in the
// first test finds none, whatever Landlock does.
TEST_F(ConfinementTest, WithoutPrivateNetworkLandlockKeepsTheHostsAbstractSocketsOut) {
  ASSERT_OK_AND_ASSIGN(int abi, landlock::Abi());
  if (abi < 6) GTEST_SKIP() << "scoping needs Landlock ABI 6, the kernel has " << abi;
  std::string name = absl::StrCat("capbroker-probe-netless-", getpid());
  UniqueFd listener = ListenAbstract(name);
  SandboxSpec spec;
  spec.name = "escape-probe";
  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"),
               absl::StrCat("--abstract-socket=", name)};
  spec.uid = kServiceUid;
  spec.gid = kServiceGid;
  spec.protections.private_network = Requirement::kOff;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force,
              AllOf(Not(Contains("netns")), Contains(absl::StrCat("landlock:", abi))));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  std::vector<std::string> lines = absl::StrSplit(finished.output, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, Contains("done")) << finished.output;
  EXPECT_THAT(finished.output, Not(HasSubstr("ESCAPED")));
  EXPECT_EQ(LineFor(lines, "unix-connect-abstract"),
            "unix-connect-abstract: blocked (Operation not permitted)");
  EXPECT_LT(accept(listener.get(), nullptr, nullptr), 0);
  EXPECT_EQ(errno, EAGAIN);
}

// Without Landlock, the minimal root's read-only flags alone keep the
// service from writing there: / and /dev are tmpfs mounted after the
// child took the service's ids, so the service owns them and file modes
// stop nothing; /usr and /etc are the host's, bound read-only.
TEST_F(ConfinementTest, WithoutLandlockTheMinimalRootIsReadOnly) {
  SandboxSpec spec;
  spec.name = "escape-probe";
  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe")};
  spec.uid = kServiceUid;
  spec.gid = kServiceGid;
  spec.protections.landlock = Requirement::kOff;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, AllOf(Contains("mountns"), Not(Contains(StartsWith("landlock")))));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  std::vector<std::string> lines = absl::StrSplit(finished.output, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, Contains("done")) << finished.output;
  EXPECT_THAT(finished.output, Not(HasSubstr("ESCAPED")));
  for (const char* attempt : {"write-root", "mkdir-root", "write-dev", "write-usr", "write-etc"}) {
    EXPECT_EQ(LineFor(lines, attempt), absl::StrCat(attempt, ": blocked (Read-only file system)"));
  }
}

// A service allowed inet sockets still reaches nothing of the host's
// network: the seccomp filter lets it create them, Landlock lets it bind
// and connect TCP; only its network namespace, with "lo" down and no other
// interface, keeps it from the host's listeners.
TEST_F(ConfinementTest, AServiceAllowedInetReachesNoHostListener) {
  LoopbackListeners loopback;
  SandboxSpec spec;
  spec.name = "escape-probe";
  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"), "--net-only"};
  for (std::string& arg : loopback.ProbeArgs()) spec.argv.push_back(std::move(arg));
  spec.uid = kServiceUid;
  spec.gid = kServiceGid;
  spec.protections.restrict_address_families = {AddressFamily::kUnix, AddressFamily::kInet};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, Contains("netns"));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output,
            "interfaces: blocked (lo down, none with an address)\n"
            "tcp-connect: blocked (Network is unreachable)\n"
            "udp-send: blocked (Network is unreachable)\n"
            "done\n");
  loopback.ExpectUntouched();
}

}  // namespace
}  // namespace capbroker::sandbox
