#include "broker/peer/peer_identity.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/sandbox/clone_args.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/datagram.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/fuse_file.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::peer {
namespace {

using ::testing::HasSubstr;

// What the broker learns of the peer of `fd`: its credentials, then its
// verified exe.
absl::StatusOr<Identity> Identify(int fd) {
  absl::StatusOr<Credentials> credentials = PeerCredentials(fd);
  if (!credentials.ok()) return credentials.status();
  return IdentifyPeer(*credentials);
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf));
  return n > 0 ? std::string(buf, n) : "";
}

TEST(IdentifyPeerTest, IdentifiesALiveProcessWithoutLeakingThePidfd) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  int before = testing::CountOpenFds();
  ASSERT_OK_AND_ASSIGN(Identity id, Identify(pair.first.get()));
  EXPECT_EQ(testing::CountOpenFds(), before);
  EXPECT_EQ(id.uid, getuid());
  EXPECT_EQ(id.gid, getgid());
  EXPECT_EQ(id.pid, getpid());
  EXPECT_EQ(id.exe, SelfExe());
}

// The pidfd vouches for the socket's own peer only, so IdentifyPeer must
// never be handed a pid, uid or gid the socket did not give. That is the
// type's doing, checked here at compile time: Credentials come from
// PeerCredentials alone, and IdentifyPeer takes nothing else. (That the
// peer identified is the socket's, with its own program, is
// ProgramPeerTest.BindMountedExecutableIsNotBelieved's plain case: the peer
// there is a child running another program.)
static_assert(!std::is_default_constructible_v<Credentials>);
static_assert(!std::is_aggregate_v<Credentials>);
static_assert(!std::is_constructible_v<Credentials, int, uint32_t, uint32_t, pid_t>);
static_assert(!std::is_constructible_v<Credentials, Identity>);
static_assert(!std::is_invocable_v<decltype(&IdentifyPeer), Identity>);

// A socket whose peer has exited and been reaped: a child made a socketpair
// (so its pid is the pair's credentials), sent one end here and exited.
struct ReapedPeer {
  UniqueFd socket;
  pid_t pid = -1;
};

void MakeReapedPeer(ReapedPeer& peer) {
  ASSERT_OK_AND_ASSIGN(auto carrier, wire::SeqpacketPair());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto pair = wire::SeqpacketPair();
    uint64_t word = 0;
    iovec iov{&word, sizeof(word)};
    bool ok = pair.ok() &&
              wire::SendDatagram(carrier.second.get(), &iov, 1,
                                 {pair->second.get()}).ok();
    _exit(ok ? 0 : 1);
  }
  int status;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  wire::ReceiveBuffer buffer;
  ASSERT_OK_AND_ASSIGN(auto datagram,
                       wire::ReceiveDatagram(carrier.first.get(), buffer));
  ASSERT_TRUE(datagram.has_value());
  ASSERT_EQ(datagram->fds.size(), 1u);
  peer.socket = std::move(datagram->fds[0]);
  peer.pid = child;
}

TEST(IdentifyPeerTest, ExitedPeerHasNoExe) {
  // Its pid is on the socket but can no longer be verified.
  ReapedPeer peer;
  ASSERT_NO_FATAL_FAILURE(MakeReapedPeer(peer));
  ASSERT_OK_AND_ASSIGN(Identity id, Identify(peer.socket.get()));
  EXPECT_EQ(id.pid, peer.pid);
  EXPECT_EQ(id.exe, "");
}

// A process at pid `pid`, running /bin/sleep; killed and reaped when this
// goes. Started by Successor.
struct Successor {
  Successor() = default;
  Successor(const Successor&) = delete;
  Successor& operator=(const Successor&) = delete;
  ~Successor() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  pid_t pid = -1;
};

// Starts `successor` at pid `pid` (clone3 with set_tid, which takes
// CAP_SYS_ADMIN in the pid namespace's user namespace) and returns once it
// has exec'd /bin/sleep. `*taken` (and no failure) when another process has
// that pid already.
void StartSuccessor(pid_t pid, Successor& successor, bool* taken) {
  *taken = false;
  int exec_pipe[2];
  ASSERT_EQ(pipe2(exec_pipe, O_CLOEXEC), 0);
  UniqueFd exec_read(exec_pipe[0]), exec_write(exec_pipe[1]);
  uint64_t wanted = static_cast<uint64_t>(pid);
  sandbox::CloneArgs args = {};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uintptr_t>(&wanted);
  args.set_tid_size = 1;
  const pid_t made = static_cast<pid_t>(syscall(SYS_clone3, &args, sizeof args));
  if (made == 0) {
    execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    _exit(127);
  }
  if (made < 0 && errno == EEXIST) {
    *taken = true;
    return;
  }
  ASSERT_EQ(made, pid) << "clone3(set_tid=" << pid << "): " << strerror(errno);
  successor.pid = made;
  exec_write.reset();
  char c;
  ASSERT_EQ(read(exec_read.get(), &c, 1), 0) << "the successor did not exec";
}

// The pid of a peer that exited is taken by a new process running another
// program (the kernel hands out a freed pid again; here it is asked to).
// SO_PEERPIDFD still answers for the reaped peer, and /proc/PID/exe names
// the successor's program: only the pidfd, which says the peer is dead,
// keeps that program's name from the peer.
TEST(IdentifyPeerTest, APidReusedByAnotherProgramLendsItNothing) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to choose a pid (clone3 set_tid)";
  // Another process could take the freed pid first: a few peers then.
  for (int attempt = 0; attempt < 8; ++attempt) {
    ReapedPeer peer;
    ASSERT_NO_FATAL_FAILURE(MakeReapedPeer(peer));
    Successor successor;
    bool taken = false;
    ASSERT_NO_FATAL_FAILURE(StartSuccessor(peer.pid, successor, &taken));
    if (taken) continue;
    // The pid now names a live process running another program.
    char target[4096];
    ssize_t n = readlink(absl::StrCat("/proc/", peer.pid, "/exe").c_str(), target,
                         sizeof(target));
    ASSERT_GT(n, 0) << strerror(errno);
    ASSERT_THAT(std::string(target, n), HasSubstr("sleep"));
    ASSERT_OK_AND_ASSIGN(Identity id, Identify(peer.socket.get()));
    EXPECT_EQ(id.pid, peer.pid);
    EXPECT_EQ(id.exe, "") << "the peer was given its successor's program";
    return;
  }
  FAIL() << "every freed pid was taken by another process first";
}

// Connects to `listener_path`, optionally moves into a user and mount
// namespace of its own and bind-mounts /bin/sleep over `trusted`, then execs
// `trusted`. Never returns.
[[noreturn]] void ConnectAndExec(const std::string& listener_path, const std::string& trusted,
                                 bool bind_mount) {
  auto fd = wire::ConnectSeqpacket(listener_path);
  if (!fd.ok()) _exit(10);
  int keep = fd->release();  // stays open across exec
  (void)keep;
  if (bind_mount) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) _exit(11);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(12);
    if (mount("/bin/sleep", trusted.c_str(), nullptr, MS_BIND, nullptr) != 0) _exit(13);
  }
  execl(trusted.c_str(), "trusted", "1000", static_cast<char*>(nullptr));
  _exit(14);
}

// A child connected to a listener of the test, running a program; killed
// and reaped when this goes.
struct ProgramPeer {
  ProgramPeer() = default;
  ProgramPeer(ProgramPeer&& other)
      : connection(std::move(other.connection)), pid(std::exchange(other.pid, -1)) {}
  ~ProgramPeer() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  UniqueFd connection;  // the listener's end
  pid_t pid = -1;
};

// Tests of peers that run a chosen program, connected to a listener here.
class ProgramPeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_path_ = dir_.Join("l");
    listener_.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_OK_AND_ASSIGN(wire::UnixAddress a, wire::MakeUnixAddress(listener_path_));
    ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
    ASSERT_EQ(listen(listener_.get(), 4), 0);
  }

  // Starts a child that connects and execs `program` (see ConnectAndExec);
  // returns once it has exec'd.
  absl::StatusOr<ProgramPeer> Start(const std::string& program, bool bind_mount) {
    // A close-on-exec pipe tells when the child has exec'd: EOF.
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
    ProgramPeer peer;
    peer.pid = fork();
    if (peer.pid < 0) return absl::InternalError("fork");
    if (peer.pid == 0) {
      close(exec_pipe[0]);
      ConnectAndExec(listener_path_, program, bind_mount);
    }
    close(exec_pipe[1]);
    peer.connection.reset(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char c;
    bool execd = read(exec_pipe[0], &c, 1) == 0;
    close(exec_pipe[0]);
    if (!peer.connection || !execd) return absl::InternalError("the child did not exec");
    return peer;
  }

  testing::TempDir dir_;
  std::string listener_path_;
  UniqueFd listener_;
};

// A client that bind-mounts another binary over a trusted path in a mount
// namespace of its own reads, through /proc/PID/exe, as that trusted path;
// the broker must not believe it.
TEST_F(ProgramPeerTest, BindMountedExecutableIsNotBelieved) {
  // The "trusted" program: a copy of /bin/sleep, so both children run.
  std::string trusted =
      dir_.WriteFile("trusted", testing::ReadWholeFile("/bin/sleep"), 0755);
  for (bool bind_mount : {false, true}) {
    SCOPED_TRACE(bind_mount ? "bind-mounted" : "plain");
    ASSERT_OK_AND_ASSIGN(ProgramPeer peer, Start(trusted, bind_mount));
    ASSERT_OK_AND_ASSIGN(Identity id, Identify(peer.connection.get()));
    EXPECT_EQ(id.pid, peer.pid);
    if (bind_mount) {
      EXPECT_EQ(id.exe, "") << "believed a bind mount in the client's own namespace";
    } else {
      EXPECT_EQ(id.exe, trusted);
    }
  }
}

// The broker identifies peers in its only thread. A client running its
// program from a FUSE (or network) file system whose server stalls must not
// stall it: identification asks such a file system nothing. Its server here
// refuses (and counts) what the identifying thread asks, where a stalled one
// would never answer. The program is still identified when the kernel's
// caches vouch for its path, and left unknown (exe rules do not match) when
// they cannot.
TEST_F(ProgramPeerTest, NeverWaitsOnTheFileSystemOfThePeersProgram) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a FUSE file system";
  // The mount stays in this test binary's own mount namespace.
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
  for (bool cache : {true, false}) {
    SCOPED_TRACE(cache ? "names and attributes cached" : "nothing cached");
    std::string mountpoint = dir_.Join(cache ? "cached" : "uncached");
    ASSERT_EQ(mkdir(mountpoint.c_str(), 0755), 0);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::FuseFile> fuse,
                         testing::FuseFile::Mount(mountpoint, "program", "/bin/sleep", cache));
    ASSERT_OK_AND_ASSIGN(ProgramPeer peer, Start(fuse->path(), /*bind_mount=*/false));
    fuse->RefuseThread(gettid());
    absl::StatusOr<Identity> id = Identify(peer.connection.get());
    EXPECT_EQ(fuse->refused(), 0) << "identifying the peer asked its program's file system";
    ASSERT_OK(id);
    EXPECT_EQ(id->pid, peer.pid);
    EXPECT_EQ(id->exe, cache ? fuse->path() : "");
  }
}

// Out of fds after the pidfd was taken: the executable cannot be opened to
// verify it. The peer is refused, not admitted with its exe unknown for the
// life of its connection.
TEST(IdentifyPeerTest, OutOfFdsForTheExecutableRefusesThePeer) {
  ASSERT_OK_AND_ASSIGN(auto pair, wire::SeqpacketPair());
  ASSERT_OK(Identify(pair.first.get()).status());
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Every number below the limit in use but one: the pidfd takes it.
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(testing::CountOpenFds()) + 64;
  ASSERT_LE(low.rlim_cur, saved.rlim_max);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<UniqueFd> filler;
  for (;;) {
    UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd) break;
    filler.push_back(std::move(fd));
  }
  ASSERT_EQ(errno, EMFILE);
  ASSERT_FALSE(filler.empty());
  filler.pop_back();
  absl::StatusOr<Identity> id = Identify(pair.first.get());
  filler.clear();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_THAT(id, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("executable")));
}

TEST(IdentifyPeerTest, BadFdFails) {
  EXPECT_THAT(Identify(-1), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace capbroker::peer
