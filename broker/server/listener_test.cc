#include "broker/server/listener.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/raw_send.h"
#include "tests/fixtures/foreign_link.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/in_child.h"

namespace capbroker::server {
namespace {

using ::testing::AllOf;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

// Binds the AF_UNIX socket `fd` at `path`.
void BindAt(int fd, const std::string& path) {
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress a, wire::MakeUnixAddress(path));
  ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.length), 0);
}

// Makes the directory `path`, of `mode`, owned by `uid` and `gid`.
void MakeDirOwnedBy(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
  ASSERT_EQ(mkdir(path.c_str(), mode), 0) << std::strerror(errno);
  ASSERT_EQ(chown(path.c_str(), uid, gid), 0) << std::strerror(errno);
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

TEST(ListenerTest, BindsWithDeliberateModesAndRemovesItsSocket) {
  TempDir dir;
  std::string path = dir.Join("run/broker.sock");
  {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, std::nullopt));
    EXPECT_TRUE(testing::IsCloseOnExec(listener.fd()));
    // Run as root in CI: the system broker's modes.
    mode_t want_dir = geteuid() == 0 ? 0711 : 0700;
    mode_t want_sock = geteuid() == 0 ? 0666 : 0600;
    EXPECT_EQ(ModeOf(dir.Join("run")), want_dir);
    EXPECT_EQ(ModeOf(path), want_sock);
    EXPECT_OK(wire::ConnectSeqpacket(path));
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0);
}

// Sends one byte with `fd` attached on `sock`; 0 or the errno.
int SendFd(int sock, int fd) {
  const uint8_t byte = 0;
  return capbroker::testing::RawSend(sock, {&byte, 1}, {&fd, 1}, MSG_DONTWAIT);
}

// The broker takes no fds: a client's sendmsg with fds fails from its first
// datagram on, before the broker has even accepted the connection.
TEST(ListenerTest, ItsConnectionsRefuseFdsFromTheStart) {
  TempDir dir;
  std::string path = dir.Join("s");
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, std::nullopt));
  if (listener.fd_refusal().code() == absl::StatusCode::kUnimplemented) {
    GTEST_SKIP() << listener.fd_refusal().message();
  }
  ASSERT_OK(listener.fd_refusal());
  ASSERT_OK_AND_ASSIGN(UniqueFd client, wire::ConnectSeqpacket(path));
  EXPECT_EQ(SendFd(client.get(), STDIN_FILENO), EPERM);
  UniqueFd accepted(accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_FALSE(wire::TakesFds(accepted.get()).value_or(true));
}

TEST(ListenerTest, SocketModeOverrides) {
  TempDir dir;
  std::string path = dir.Join("s");
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, 0660));
  EXPECT_EQ(ModeOf(path), 0660u);
}

// A directory the broker creates lets in whom the socket's mode lets
// connect, by root's broker or a user's alike: search permission (x) for
// group and others where the socket gives them write (w), and never read
// or write. A user's broker with --socket-mode 0666 is meant for every
// local user: a 0700 directory would keep them all out.
TEST(ListenerTest, ACreatedDirectoryLetsInWhomTheSocketDoes) {
  TempDir dir;
  struct Case {
    mode_t socket;
    mode_t directory;
  };
  for (const Case& c : {Case{0666, 0711}, Case{0660, 0710}, Case{0606, 0701},
                        Case{0600, 0700}, Case{0644, 0700}}) {
    SCOPED_TRACE(absl::StrFormat("socket mode 0%o", c.socket));
    std::string sub = dir.Join(absl::StrFormat("d%o", c.socket));
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(sub + "/s", c.socket));
    EXPECT_EQ(ModeOf(sub), c.directory);
    EXPECT_EQ(ModeOf(sub + "/s"), c.socket);
  }
}

TEST(ListenerTest, RefusesToDisplaceALiveBroker) {
  TempDir dir;
  std::string path = dir.Join("s");
  ASSERT_OK_AND_ASSIGN(Listener first, Listener::Bind(path, std::nullopt));
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("another capbrokerd holds the lock " + path + ".lock")));
  EXPECT_OK(wire::ConnectSeqpacket(path));  // the first one still serves
}

// A socket that listens without the lock (a broker given the socket by
// systemd, say) is not displaced either.
TEST(ListenerTest, RefusesToDisplaceALiveSocketWithoutTheLock) {
  TempDir dir;
  std::string path = dir.Join("s");
  UniqueFd live(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(live.get(), path));
  ASSERT_EQ(listen(live.get(), 8), 0);
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already listening")));
  EXPECT_OK(wire::ConnectSeqpacket(path));
}

// A live socket whose queue of connections not yet accepted is full (anyone
// who may connect can fill it) is live too. The start refuses at once: a
// probe that waited for room in the queue would wait for as long as nothing
// accepts, and the broker would never start, nor say why.
TEST(ListenerTest, RefusesALiveSocketWhoseQueueIsFullWithoutWaiting) {
  TempDir dir;
  std::string path = dir.Join("s");
  UniqueFd live(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress a, wire::MakeUnixAddress(path));
  ASSERT_EQ(bind(live.get(), reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
  ASSERT_EQ(listen(live.get(), 0), 0);
  ASSERT_OK_AND_ASSIGN(UniqueFd queued, wire::ConnectSeqpacket(path));
  // Full: a blocking connect would wait now.
  UniqueFd next(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  ASSERT_NE(connect(next.get(), reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
  ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("another program is listening on " + path),
                             HasSubstr("queue"))));
  EXPECT_EQ(access(path.c_str(), F_OK), 0) << "the live socket was removed";
}

// Another broker between its bind and its listen: its socket refuses
// connections, so it looks stale. Without the lock it would be unlinked and
// that broker would listen on a socket no client can reach.
TEST(ListenerTest, LeavesTheSocketOfABrokerHoldingTheLockAlone) {
  TempDir dir;
  std::string path = dir.Join("s");
  UniqueFd other_lock(open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(other_lock.valid());
  ASSERT_EQ(flock(other_lock.get(), LOCK_EX | LOCK_NB), 0);
  UniqueFd bound(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(bound.get(), path));
  struct stat before;
  ASSERT_EQ(lstat(path.c_str(), &before), 0);

  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("another capbrokerd holds the lock")));
  struct stat after;
  ASSERT_EQ(lstat(path.c_str(), &after), 0) << "the other broker's socket was removed";
  EXPECT_EQ(after.st_ino, before.st_ino);
  // That broker goes on to listen, and is reachable.
  ASSERT_EQ(listen(bound.get(), 8), 0);
  EXPECT_OK(wire::ConnectSeqpacket(path));
}

TEST(ListenerTest, HoldsTheLockForItsLifetimeThenRemovesIt) {
  TempDir dir;
  std::string path = dir.Join("s");
  std::string lock_path = path + ".lock";
  {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, std::nullopt));
    EXPECT_EQ(ModeOf(lock_path), 0600u);
    UniqueFd probe(open(lock_path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(probe.valid());
    EXPECT_NE(flock(probe.get(), LOCK_EX | LOCK_NB), 0) << "the lock is not held";
    EXPECT_EQ(errno, EWOULDBLOCK);
    // The lock fd stays in the broker, never in what it runs.
    int lock_fds = 0;
    for (int fd = 0; fd < 1024; ++fd) {
      char target[PATH_MAX] = {};
      std::string link = absl::StrCat("/proc/self/fd/", fd);
      if (fd == probe.get() || readlink(link.c_str(), target, sizeof(target) - 1) <= 0) {
        continue;
      }
      if (lock_path != target) continue;
      ++lock_fds;
      EXPECT_TRUE(testing::IsCloseOnExec(fd));
    }
    EXPECT_EQ(lock_fds, 1);
  }
  EXPECT_NE(access(lock_path.c_str(), F_OK), 0);
  EXPECT_OK(Listener::Bind(path, std::nullopt));
}

TEST(ListenerTest, ReusesTheLockFileOfABrokerThatDied) {
  TempDir dir;
  std::string path = dir.Join("s");
  dir.WriteFile("s.lock", "", 0600);  // left behind; nobody holds a lock on it
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, std::nullopt));
  EXPECT_OK(wire::ConnectSeqpacket(path));
}

// A lock file made under umask 0277 is 0400; a broker of that user that
// crashed left it, and the next start failed to open it for writing
// ("Permission denied"). It is opened read-only (flock needs no more) and
// given its 0600.
TEST(ListenerTest, ReusesAStaleLockFileItCannotWrite) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the broker as another user";
  constexpr uid_t kUser = 65534;
  TempDir top{TempDir::OpenToOthers{}};
  const std::string run = top.Join("run");
  const std::string path = run + "/s";
  ASSERT_NO_FATAL_FAILURE(MakeDirOwnedBy(run, 0700, kUser, kUser));
  {
    UniqueFd stale(open(LockFilePath(path).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
    ASSERT_TRUE(stale.valid()) << std::strerror(errno);
    ASSERT_EQ(fchown(stale.get(), kUser, kUser), 0) << std::strerror(errno);
    ASSERT_EQ(fchmod(stale.get(), 0400), 0);
  }
  capbroker::testing::ChildResult bound = capbroker::testing::RunInChild([&]() -> std::string {
    if (setresgid(kUser, kUser, kUser) != 0 || setresuid(kUser, kUser, kUser) != 0) {
      return "setresuid failed";
    }
    umask(0277);
    absl::StatusOr<Listener> listener = Listener::Bind(path, std::nullopt);
    if (!listener.ok()) return std::string(listener.status().ToString());
    return absl::StrFormat("serving, lock file 0%o", ModeOf(LockFilePath(path)));
  });
  EXPECT_EQ(bound.output, "serving, lock file 0600");
}

TEST(ListenerTest, RefusesASymlinkedLockFile) {
  TempDir dir;
  std::string target = dir.WriteFile("elsewhere", "keep");
  ASSERT_EQ(symlink(target.c_str(), dir.Join("s.lock").c_str()), 0);
  EXPECT_THAT(Listener::Bind(dir.Join("s"), std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("symlink")));
}

// A path is shown escaped: a newline or an escape sequence in it must not
// forge a line of the broker's log or reach the terminal.
TEST(ListenerTest, ErrorsShowThePathEscaped) {
  TempDir dir;
  const std::string path = dir.Join("a\x1b[31mRED\nfake: line");
  std::string target = dir.WriteFile("elsewhere", "keep");
  ASSERT_EQ(symlink(target.c_str(), LockFilePath(path).c_str()), 0);
  absl::StatusOr<Listener> refused = Listener::Bind(path, std::nullopt);
  ASSERT_FALSE(refused.ok());
  const std::string message(refused.status().message());
  EXPECT_THAT(message, HasSubstr(dir.Join("a\\x1b[31mRED\\x0afake: line.lock is a symlink")));
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_EQ(message.find('\x1b'), std::string::npos) << message;
}

TEST(ListenerTest, ReplacesAStaleSocket) {
  TempDir dir;
  std::string path = dir.Join("s");
  {
    // A socket file whose broker is gone: bound, never listening.
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  }
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, std::nullopt));
  EXPECT_OK(wire::ConnectSeqpacket(path));
}

TEST(ListenerTest, LeavesOtherFilesAlone) {
  TempDir dir;
  std::string path = dir.WriteFile("important", "data");
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("not a socket")));
  EXPECT_EQ(access(path.c_str(), F_OK), 0);
}

// A symlink at the socket's path is not ours to remove, even one pointing at
// a socket a broker left (which the probe through it finds stale): only the
// link would go, and the broker would bind where it was.
TEST(ListenerTest, LeavesASymlinkToAStaleSocketAlone) {
  TempDir dir;
  std::string stale = dir.Join("stale");
  {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), stale));
  }
  std::string path = dir.Join("s");
  ASSERT_EQ(symlink(stale.c_str(), path.c_str()), 0);
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("not a socket")));
  struct stat st;
  ASSERT_EQ(lstat(path.c_str(), &st), 0) << "the link was removed";
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(lstat(stale.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

// A socket of another type at the path (a stream socket: the probe's
// connect answers EPROTOTYPE) is another program's, not a broker's leftover.
TEST(ListenerTest, LeavesASocketOfAnotherTypeAlone) {
  TempDir dir;
  std::string path = dir.Join("s");
  UniqueFd other(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(other.get(), path));
  ASSERT_EQ(listen(other.get(), 8), 0);
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       AllOf(HasSubstr("is a socket that is not a stale broker socket"),
                             HasSubstr(std::strerror(EPROTOTYPE)))));
  // Still there, and still the other program's.
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress a, wire::MakeUnixAddress(path));
  UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&a.addr), a.length), 0)
      << std::strerror(errno);
}

TEST(ListenerTest, ClearErrorsForBadPaths) {
  TempDir dir;
  EXPECT_THAT(Listener::Bind(dir.Join("missing/parent/s"), std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
  EXPECT_THAT(Listener::Bind(dir.Join(std::string(120, 'x')), std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sun_path")));
  std::string file = dir.WriteFile("file", "");
  EXPECT_THAT(Listener::Bind(file + "/s", std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a directory")));
}

TEST(ListenerTest, RefusesASocketDirectoryOthersCanWrite) {
  TempDir dir;
  std::string run = dir.Join("run");
  ASSERT_EQ(mkdir(run.c_str(), 0700), 0);
  // Group-writable, world-writable, and world-writable with the sticky bit
  // (as /tmp): another user could take the socket's name in each.
  for (mode_t mode : {0770, 0777, 01777}) {
    ASSERT_EQ(chmod(run.c_str(), mode), 0);
    absl::StatusOr<Listener> listener = Listener::Bind(run + "/s", std::nullopt);
    EXPECT_THAT(listener, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   HasSubstr("socket directory " + run)));
    EXPECT_THAT(listener.status().message(),
                HasSubstr(absl::StrFormat("owner uid %d, mode 0%o", geteuid(), mode)));
    EXPECT_NE(access((run + "/s").c_str(), F_OK), 0) << "must not have bound";
  }
  ASSERT_EQ(chmod(run.c_str(), 0700), 0);
  EXPECT_OK(Listener::Bind(run + "/s", std::nullopt));
}

TEST(ListenerTest, RefusesASocketDirectoryOfAnotherUser) {
  TempDir dir;
  std::string run = dir.Join("run");
  ASSERT_EQ(mkdir(run.c_str(), 0755), 0);
  if (chown(run.c_str(), 65534, 65534) != 0) {
    // Not root, or in a user namespace (Bazel's sandbox) that maps no other
    // uid: DirectoryRulesForAnyOwner checks the rule itself.
    GTEST_SKIP() << "cannot give the directory away here: " << errno;
  }
  EXPECT_THAT(Listener::Bind(run + "/s", std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("socket directory " + run +
                                 " is owned by uid 65534 (mode 0755)")));
  EXPECT_NE(access((run + "/s").c_str(), F_OK), 0);
}

// The way README gives to serve one group's members alone: the socket
// takes the group of its setgid directory (not the broker's gid), which the
// directory's own rule accepts (not writable by the group), and
// --socket-mode 0660 keeps everyone else out.
TEST(ListenerTest, ASocketInASetgidDirectoryTakesItsGroup) {
  TempDir dir;
  std::string run = dir.Join("run");
  ASSERT_EQ(mkdir(run.c_str(), 02750), 0);
  if (chown(run.c_str(), geteuid(), 65534) != 0) {
    GTEST_SKIP() << "cannot give the directory to another group here: " << errno;
  }
  ASSERT_EQ(chmod(run.c_str(), 02750), 0);
  ASSERT_NE(getegid(), 65534u);
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(run + "/s", 0660));
  struct stat st;
  ASSERT_EQ(stat((run + "/s").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST(ListenerTest, ChecksTheDirectoriesAboveTheSocket) {
  TempDir dir;
  std::string shared = dir.Join("shared");
  std::string run = shared + "/run";
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(run.c_str(), 0700), 0);
  // Others could rename `run` away and put their own in its place.
  ASSERT_EQ(chmod(shared.c_str(), 0777), 0);
  EXPECT_THAT(Listener::Bind(run + "/s", std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("directory " + shared + ", on the path to the socket " +
                                 run + "/s, is writable by other users")));
  // Nor when the broker would create the directory there (nor is it made).
  EXPECT_THAT(Listener::Bind(shared + "/new/s", std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("on the path to the socket")));
  EXPECT_NE(access((shared + "/new").c_str(), F_OK), 0);
  // Sticky, as /tmp: others cannot rename what is ours.
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  EXPECT_OK(Listener::Bind(run + "/s", std::nullopt));
}

TEST(ListenerTest, DirectoryRulesForAnyOwner) {
  struct stat st {};
  st.st_mode = S_IFDIR | 0755;
  st.st_uid = 1000;
  EXPECT_OK(CheckSocketDirectoryStat("/d", st, 1000, "fix"));
  EXPECT_THAT(CheckSocketDirectoryStat("/d", st, 2000, "fix"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("/d is owned by uid 1000 (mode 0755)")));
  st.st_uid = 0;
  EXPECT_OK(CheckSocketDirectoryStat("/d", st, 2000, "fix"));  // root's is fine
  st.st_mode = S_IFDIR | 01777;
  EXPECT_THAT(CheckSocketDirectoryStat("/d", st, 2000, "fix"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("writable by other users (owner uid 0, mode 01777): they "
                                 "could bind a socket of their own at its name; fix")));
  // The rule for the directories on the way is broker/util's
  // (CheckTraversedDirectoryStatTest).
}

// As reported: `--socket /tmp/b3.sock` was told "use a directory only root
// can write (chmod go-w /tmp)", which breaks the system. A sticky directory
// is shared by design: the hint is a directory of the broker's own in it.
TEST(ListenerTest, AStickySharedDirectoryGetsAPrivateSubdirectoryHint) {
  struct stat st {};
  st.st_mode = S_IFDIR | 01777;
  st.st_uid = 0;
  const std::string status = SocketFlagDirectoryFix("/tmp", st, 0, "b3.sock");
  EXPECT_THAT(status, AllOf(HasSubstr("--socket /tmp/capbroker/b3.sock"),
                            HasSubstr("mkdir -m 0755 /tmp/capbroker"),
                            Not(HasSubstr("chmod go-w /tmp"))));
  // A group-writable system directory (root's, as /var/mail): use another
  // one; chmod only if nothing else writes there.
  st.st_mode = S_IFDIR | 02775;
  EXPECT_THAT(SocketFlagDirectoryFix("/var/mail", st, 0, "b.sock"),
              HasSubstr("use a path whose directories only root or uid 0 can write "
                                 "(chmod go-w /var/mail only if nothing else needs to write "
                                 "there)"));
  // The broker's own directory: chmod it.
  st.st_uid = 1000;
  st.st_mode = S_IFDIR | 0775;
  EXPECT_THAT(SocketFlagDirectoryFix("/home/b/run", st, 1000, "b.sock"),
              Eq("chmod go-w /home/b/run"));
}

// The hint works: the subdirectory it names passes, in a sticky directory.
TEST(ListenerTest, TheSubdirectoryHintIsAccepted) {
  TempDir dir;
  std::string shared = dir.Join("tmp");
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  absl::StatusOr<Listener> refused = Listener::Bind(shared + "/b3.sock", std::nullopt);
  ASSERT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("--socket " + shared + "/capbroker/b3.sock")));
  EXPECT_OK(Listener::Bind(shared + "/capbroker/b3.sock", std::nullopt));
}

// As reported: in a sticky /tmp, another user links a name to a directory
// the broker would accept; once the broker listens there, they re-point
// their link at a directory of their own and serve clients an impostor.
TEST(ListenerTest, RefusesASocketPathThroughAnotherUsersSymlink) {
  TempDir dir;
  std::optional<testing::ForeignLink> foreign = testing::MakeForeignLink(dir);
  if (!foreign.has_value()) GTEST_SKIP() << "cannot give a link away here: " << errno;
  std::string path = foreign->link + "/broker.sock";
  EXPECT_THAT(Listener::Bind(path, std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("symlink " + foreign->link + " -> " + foreign->target +
                                 ", on the path to the socket " + path +
                                 ", is owned by uid 65534")));
  EXPECT_NE(access((foreign->target + "/broker.sock").c_str(), F_OK), 0)
      << "must not have bound";
  EXPECT_NE(access((foreign->target + "/broker.sock.lock").c_str(), F_OK), 0);
}

// Root's links (such as /var/run -> /run) keep working; the socket is bound
// in the directory the link names, and messages name both.
TEST(ListenerTest, BindsThroughASymlinkOwnedByRoot) {
  TempDir dir;
  std::string run = dir.Join("run");
  ASSERT_EQ(mkdir(run.c_str(), 0755), 0);
  std::string link = dir.Join("var-run");
  ASSERT_EQ(symlink("run", link.c_str()), 0);
  {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(link + "/s", std::nullopt));
    EXPECT_OK(wire::ConnectSeqpacket(run + "/s"));
  }
  ASSERT_EQ(chmod(run.c_str(), 0777), 0);
  EXPECT_THAT(Listener::Bind(link + "/s", std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("socket directory " + run + " (named " + link +
                                 ") is writable by other users")));
}

// A broker run by a user that dies (kill -9) leaves its socket. One it
// cannot connect to itself (a mode without u+w, as --socket-mode 0400 made
// it before ParseFlags refused that) answers EACCES, not ECONNREFUSED: with
// the lock held, no broker serves it, and a socket of the broker's own uid
// is stale. Another uid's socket that refuses is still left alone.
TEST(ListenerTest, ReplacesItsOwnStaleSocketItCannotConnectTo) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the broker as another user";
  constexpr uid_t kUser = 65534;
  TempDir top{TempDir::OpenToOthers{}};
  const std::string run = top.Join("run");
  const std::string path = run + "/s";
  ASSERT_NO_FATAL_FAILURE(MakeDirOwnedBy(run, 0700, kUser, kUser));
  // Binds a socket at `path` with `mode`, as the broker's user or root, and
  // closes it: what a broker killed with SIGKILL leaves.
  auto leave_socket = [&](mode_t mode, bool as_root) {
    capbroker::testing::ChildResult made = capbroker::testing::RunInChild([&]() -> std::string {
      if (!as_root && (setresgid(kUser, kUser, kUser) != 0 || setresuid(kUser, kUser, kUser) != 0)) {
        return "setresuid failed";
      }
      UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
      absl::StatusOr<wire::UnixAddress> a = wire::MakeUnixAddress(path);
      if (!a.ok() || bind(fd.get(), reinterpret_cast<const sockaddr*>(&a->addr), a->length) != 0 ||
          listen(fd.get(), 8) != 0 || chmod(path.c_str(), mode) != 0) {
        return absl::StrCat("cannot leave a socket: ", std::strerror(errno));
      }
      return "";
    });
    return made.output;
  };
  // Listener::Bind as the broker's user; its status code and message.
  auto bind_as_user = [&]() {
    return capbroker::testing::RunInChild([&]() -> std::string {
             if (setresgid(kUser, kUser, kUser) != 0 || setresuid(kUser, kUser, kUser) != 0) {
               return "setresuid failed";
             }
             absl::StatusOr<Listener> listener = Listener::Bind(path, std::nullopt);
             if (!listener.ok()) return std::string(listener.status().ToString());
             return wire::ConnectSeqpacket(path).ok() ? "serving" : "not reachable";
           })
        .output;
  };
  ASSERT_EQ(leave_socket(0400, false), "");
  EXPECT_EQ(bind_as_user(), "serving");
  // Root's socket, 0600: the user's connect fails with EACCES too, and it
  // is not the user's to remove.
  ASSERT_EQ(leave_socket(0600, true), "");
  EXPECT_THAT(bind_as_user(), HasSubstr("is a socket that is not a stale broker socket"));
  EXPECT_EQ(access(path.c_str(), F_OK), 0);
}

// Whether other users can reach a socket: every directory on the way
// searchable by others (symlinks resolved), and the socket writable by them.
TEST(CheckReachableByOthersTest, NamesWhatKeepsOtherUsersOut) {
  // Open all the way: a directory of its own in /tmp (1777), mode 0755.
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  std::string inner = open_dir + "/inner";
  ASSERT_EQ(mkdir(inner.c_str(), 0700), 0);
  for (const std::string& dir : {open_dir, inner}) {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(dir + "/s", 0666));
    if (dir == open_dir) {
      EXPECT_OK(CheckReachableByOthers(dir + "/s"));
      // A symlink on the way is judged by what it leads to.
      ASSERT_EQ(symlink(inner.c_str(), (open_dir + "/link").c_str()), 0);
    } else {
      EXPECT_THAT(CheckReachableByOthers(dir + "/s"),
                  StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr(absl::StrCat("directory ", inner))));
      EXPECT_THAT(CheckReachableByOthers(open_dir + "/link/s"),
                  StatusIs(absl::StatusCode::kFailedPrecondition,
                           HasSubstr(absl::StrCat("directory ", inner))));
    }
  }
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(open_dir + "/s", 0660));
  EXPECT_THAT(CheckReachableByOthers(open_dir + "/s"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("mode 0660")));
}

// Where the way is shut decides the advice (daemon.cc): a directory above
// the socket's own keeps every group out, whatever the socket's group.
TEST(FindSocketBlockerTest, SaysWhereTheWayIsShut) {
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  std::string priv = open_dir + "/priv";
  std::string sock = priv + "/sock";
  ASSERT_EQ(mkdir(priv.c_str(), 0700), 0);
  ASSERT_EQ(mkdir(sock.c_str(), 0755), 0);
  {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(sock + "/s", 0666));
    ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> above, FindSocketBlocker(sock + "/s"));
    ASSERT_TRUE(above.has_value());
    EXPECT_EQ(above->where, SocketBlocker::Where::kDirectoryAbove);
    EXPECT_EQ(above->path, priv);
    EXPECT_THAT(above->why, StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr(absl::StrCat("directory ", priv, " "))));
  }
  {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(priv + "/s", 0666));
    ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> own, FindSocketBlocker(priv + "/s"));
    ASSERT_TRUE(own.has_value());
    EXPECT_EQ(own->where, SocketBlocker::Where::kSocketDirectory);
    EXPECT_EQ(own->path, priv);
  }
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(open_dir + "/s", 0660));
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> socket, FindSocketBlocker(open_dir + "/s"));
  ASSERT_TRUE(socket.has_value());
  EXPECT_EQ(socket->where, SocketBlocker::Where::kSocket);
  EXPECT_EQ(socket->path, open_dir + "/s");
  ASSERT_EQ(chmod((open_dir + "/s").c_str(), 0666), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> none, FindSocketBlocker(open_dir + "/s"));
  EXPECT_FALSE(none.has_value());
}

// For a socket meant for one group (--socket-mode 0660), the same walk asks
// what the group's members may do: the group bits of a directory with that
// group, the other bits of one with another. The gids are arguments, so
// any will do: no chown, no root.
TEST(FindSocketBlockerTest, ForOneGroupReadsTheBitsThatApplyToItsMembers) {
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  const std::string group_dir = open_dir + "/g";  // the socket's directory
  const std::string socket = group_dir + "/s";
  ASSERT_EQ(mkdir(group_dir.c_str(), 0700), 0);
  struct stat st;
  ASSERT_EQ(stat(group_dir.c_str(), &st), 0);
  const gid_t own = st.st_gid;   // the group of every file made here
  const gid_t another = own + 1;  // the group of none
  ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(socket, 0660));
  ASSERT_EQ(chmod(group_dir.c_str(), 0750), 0);
  // g+x on the directory, g+w on the socket: the group is in, the others
  // are not.
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> in, FindSocketBlocker(socket, own));
  EXPECT_FALSE(in.has_value()) << in->why;
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> others, FindSocketBlocker(socket));
  EXPECT_TRUE(others.has_value());
  // Without g+x.
  ASSERT_EQ(chmod(group_dir.c_str(), 0705), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> no_gx, FindSocketBlocker(socket, own));
  ASSERT_TRUE(no_gx.has_value());
  EXPECT_EQ(no_gx->where, SocketBlocker::Where::kSocketDirectory);
  EXPECT_EQ(no_gx->path, group_dir);
  EXPECT_THAT(no_gx->why,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("directory ", group_dir, " (owner uid ", getuid(),
                                              ", group ", own, ", mode 0705) keeps the members "
                                              "of group ", own, ", the socket's, from the socket ",
                                              socket, ": they may not search it (g+x)"))));
  EXPECT_EQ(no_gx->fix, "chmod g+x " + group_dir);
  // A group the directory does not have: its other bits decide, and the
  // fix gives it the group rather than open it to everyone.
  ASSERT_EQ(chmod(group_dir.c_str(), 0750), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> other_group,
                       FindSocketBlocker(socket, another));
  ASSERT_TRUE(other_group.has_value());
  EXPECT_EQ(other_group->path, group_dir);
  EXPECT_THAT(other_group->why, StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("(o+x, its group being another)")));
  EXPECT_EQ(other_group->fix, absl::StrCat("chgrp ", another, " ", group_dir,
                                           " && chmod g+x ", group_dir));
  // A directory above keeps the group out in the same way.
  ASSERT_EQ(chmod(open_dir.c_str(), 0705), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> above, FindSocketBlocker(socket, own));
  ASSERT_EQ(chmod(open_dir.c_str(), 0755), 0);
  ASSERT_TRUE(above.has_value());
  EXPECT_EQ(above->where, SocketBlocker::Where::kDirectoryAbove);
  EXPECT_EQ(above->path, open_dir);
  EXPECT_EQ(above->fix, "chmod g+x " + open_dir);
  // The socket without g+w.
  ASSERT_EQ(chmod(socket.c_str(), 0606), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<SocketBlocker> no_gw, FindSocketBlocker(socket, own));
  ASSERT_TRUE(no_gw.has_value());
  EXPECT_EQ(no_gw->where, SocketBlocker::Where::kSocket);
  EXPECT_THAT(no_gw->why, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   HasSubstr("connecting takes write permission (g+w)")));
}

// A broker run by a user checks the socket systemd passed: other users
// must not be able to connect (daemon.cc refuses to start otherwise).
TEST(CheckOthersCannotConnectTest, RefusesASocketOpenToOthersOrAbstract) {
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  const std::string path = open_dir + "/s";
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  // systemd's defaults: SocketMode=0666, DirectoryMode=0755.
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);
  EXPECT_THAT(CheckOthersCannotConnect(fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("other users can connect to the socket from systemd at " +
                                       path + " (mode 0666"),
                             HasSubstr("SocketMode=0600"), HasSubstr("0700"))));
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_OK(CheckOthersCannotConnect(fd.get()));
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0700), 0);
  EXPECT_OK(CheckOthersCannotConnect(fd.get()));
  // What cannot be told is refused: fail closed.
  ASSERT_EQ(chmod(open_dir.c_str(), 0755), 0);
  ASSERT_EQ(unlink(path.c_str()), 0);
  EXPECT_THAT(CheckOthersCannotConnect(fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("cannot tell whether other users can connect"),
                             HasSubstr("not visible in the broker's mount namespace"),
                             HasSubstr("make the path visible"),
                             Not(HasSubstr("SocketMode=0600")))));
  // An abstract socket has no permissions at all.
  UniqueFd abstract(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un named = {};
  named.sun_family = AF_UNIX;
  const std::string name = absl::StrCat("capbroker-test-", getpid());  // after a NUL
  memcpy(named.sun_path + 1, name.data(), name.size());
  ASSERT_EQ(bind(abstract.get(), reinterpret_cast<const sockaddr*>(&named),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
            0)
      << std::strerror(errno);
  ASSERT_EQ(listen(abstract.get(), 8), 0);
  EXPECT_THAT(CheckOthersCannotConnect(abstract.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("every user in the network namespace can connect")));
}

// The socket's group is let in only when a SocketGroup= chose it. The
// groups systemd gives a socket without one (the broker's user's primary
// group, root's) may hold other users (`users`, gid 100, where users have
// no group of their own): their members count as anyone else.
TEST(CheckOthersCannotConnectTest, LetsInTheSocketsGroupOnlyWhenChosen) {
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string path = open_tmp.path() + "/s";
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  ASSERT_EQ(chown(path.c_str(), -1, getegid()), 0);
  ASSERT_EQ(chmod(path.c_str(), 0660), 0);
  EXPECT_THAT(CheckOthersCannotConnect(fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("its group, gid ", getegid())),
                             HasSubstr("other than the broker's primary group and root's"))));
  if (geteuid() != 0) return;  // giving the socket another group takes root
  ASSERT_EQ(chown(path.c_str(), -1, 4242), 0);
  EXPECT_OK(CheckOthersCannotConnect(fd.get()));
}

// So too under a broker that is not root, whose primary group is not
// root's: neither its own group (a user unit's default, which other users
// may share) nor root's lets anyone in, a SocketGroup= of another does.
// As root both rules name gid 0; run as a user of its own, they differ.
TEST(CheckOthersCannotConnectTest, UnderAUserBrokerLetsInNeitherItsGroupNorRoots) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to run the check as another user";
  constexpr uid_t kUser = 4000;
  constexpr gid_t kChosen = 4242;
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string path = open_tmp.path() + "/s";
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  ASSERT_EQ(chmod(path.c_str(), 0660), 0);
  // The check's outcome as the broker's user (primary group kUser, no
  // supplementary groups): "ok" or its message.
  auto check_as_user = [&]() {
    return capbroker::testing::RunInChild([&]() -> std::string {
             if (setgroups(0, nullptr) != 0 || setresgid(kUser, kUser, kUser) != 0 ||
                 setresuid(kUser, kUser, kUser) != 0) {
               return "setresuid failed";
             }
             absl::Status checked = CheckOthersCannotConnect(fd.get());
             return checked.ok() ? "ok" : std::string(checked.message());
           })
        .output;
  };
  for (gid_t group : {kUser, gid_t{0}}) {
    ASSERT_EQ(chown(path.c_str(), -1, group), 0);
    EXPECT_THAT(check_as_user(),
                AllOf(HasSubstr(absl::StrCat("its group, gid ", group)),
                      HasSubstr("other than the broker's primary group and root's")))
        << "gid " << group;
  }
  ASSERT_EQ(chown(path.c_str(), -1, kChosen), 0);
  EXPECT_EQ(check_as_user(), "ok");
}

// In a user namespace with a partial id map (a container), files the
// namespace does not map (/ or /run owned by a host user) read as owned by
// the overflow uid. Whoever reads as it is refused at admission
// (peer::CheckIdsMapped), so its owning a directory on the way lets no one
// in; with a full map, the overflow uid is a user like any other.
TEST(CheckOthersCannotConnectTest, TheOverflowUidOfAPartialMapIsNoOne) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to give a directory to uid 65534";
  TempDir tmp{TempDir::OpenToOthers{}};
  const std::string dir = tmp.Join("overflow");
  ASSERT_NO_FATAL_FAILURE(MakeDirOwnedBy(dir, 0700, 65534, 65534));
  const std::string path = dir + "/s";
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  // systemd's default socket mode, in a directory of 0700 that only its
  // owner may search.
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);
  const std::string owner = "uid 65534, owner of directory " + dir;
  EXPECT_THAT(CheckOthersCannotConnect(fd.get(), peer::UnmappedIds{}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(owner)));
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, geteuid(), peer::UnmappedIds{}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(owner)));
  const peer::UnmappedIds partial{65534, 65534};
  EXPECT_OK(CheckOthersCannotConnect(fd.get(), partial));
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0600, geteuid(), partial));
  // Another overflow uid (the sysctl changed): 65534 is a user again.
  EXPECT_THAT(CheckOthersCannotConnect(fd.get(), peer::UnmappedIds{4000, std::nullopt}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(owner)));
}

// A socket from systemd gets the check of the directory Bind makes: one
// others (or its group) may write, not sticky, lets them move the unit's
// socket away and bind their own at its path. Refused, naming the path and
// the unit's ListenSequentialPacket=.
TEST(CheckSocketDirectoryFromSystemdTest, RefusesADirectoryOthersCanWrite) {
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string dir = open_tmp.path();
  const std::string path = dir + "/s";
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  EXPECT_OK(CheckSocketDirectoryFromSystemd(fd.get()));
  // Sticky too (01777, as /tmp): the advice is the unit's, never a
  // --socket (a usage error with a socket from systemd) nor a directory the
  // broker would create (it creates none for systemd's socket).
  for (mode_t mode : {0777, 0775, 01777}) {
    ASSERT_EQ(chmod(dir.c_str(), mode), 0);
    EXPECT_THAT(CheckSocketDirectoryFromSystemd(fd.get()),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("the socket from systemd at " + path),
                               HasSubstr("is writable by other users"),
                               HasSubstr("set ListenSequentialPacket= in the .socket unit to a "
                                         "path in a directory of its own"),
                               Not(HasSubstr("--socket")), Not(HasSubstr("the broker creates")),
                               Not(HasSubstr("chmod")))))
        << std::oct << mode;
  }
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  EXPECT_OK(CheckSocketDirectoryFromSystemd(fd.get()));
}

// --socket-mode cannot set the mode of a socket from systemd: it is
// checked against it, and a socket that lets in more is refused. Who gets
// in depends on the directories too: a directory of its own in /tmp
// (1777), mode 0755, is open all the way (a test's $TEST_TMPDIR may not be).
TEST(CheckSocketModeFromSystemdTest, RefusesASocketThatLetsInMoreThanTheMode) {
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  const std::string path = open_dir + "/s";
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  const uid_t euid = geteuid();
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);  // systemd's default SocketMode=
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, euid),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("the socket from systemd at " + path),
                             HasSubstr("mode 0666) lets in more than --socket-mode 0600 says"),
                             HasSubstr("every other user"), HasSubstr("SocketMode=0600"),
                             HasSubstr("a directory of mode 0700"))));
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0660, euid),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("every other user"), Not(HasSubstr("its group")))));
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0666, euid));
  // The same 0666 socket in a 0700 directory (the README's advice, or a
  // user unit under %t) lets in its owner alone; in a 0750 one, its group
  // too, and no one else.
  ASSERT_EQ(chmod(open_dir.c_str(), 0700), 0);
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0600, euid));
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0660, euid));
  ASSERT_EQ(chmod(open_dir.c_str(), 0750), 0);
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0660, euid));
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, euid),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("its group, gid"), Not(HasSubstr("every other user")))));
  ASSERT_EQ(chmod(open_dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(path.c_str(), 0660), 0);
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, euid),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("its group, gid")));
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0660, euid));
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0600, euid));
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0666, euid));  // less is not refused
  // Another user's socket lets that user in, unless every user is meant
  // (root's is no news: root passes permission checks anyway).
  if (euid == 0) {
    constexpr uid_t kOwner = 65533, kBroker = 65534;
    ASSERT_EQ(chown(path.c_str(), kOwner, static_cast<gid_t>(-1)), 0) << std::strerror(errno);
    EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, kBroker),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr(absl::StrCat("its owner, uid ", kOwner)),
                               HasSubstr(absl::StrCat("uid ", kBroker, ", for a system unit")))));
    EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0666, kBroker));
    EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0600, kOwner));
  }
  // What cannot be told is refused: fail closed. A path this mount
  // namespace does not hold (the service's PrivateTmp=, a container) is
  // named as the cause, not a SocketMode= that may well be set.
  ASSERT_EQ(unlink(path.c_str()), 0);
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("cannot tell"),
                             HasSubstr("not visible in the broker's mount namespace"),
                             HasSubstr("leave --socket-mode out"),
                             HasSubstr("make the path visible"), Not(HasSubstr("SocketMode=0")))));
  // A broker run by a user is checked without the flag too: only the path
  // made visible helps.
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, 1000),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("not visible in the broker's mount namespace"),
                             HasSubstr("make the path visible"),
                             Not(HasSubstr("leave --socket-mode out")))));
  {
    std::ofstream file(path);
  }
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0666, euid),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a socket")));
  // An abstract socket: anyone in the network namespace may connect.
  UniqueFd abstract(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un named = {};
  named.sun_family = AF_UNIX;
  const std::string name = absl::StrCat("capbroker-mode-test-", getpid());  // after a NUL
  memcpy(named.sun_path + 1, name.data(), name.size());
  ASSERT_EQ(bind(abstract.get(), reinterpret_cast<const sockaddr*>(&named),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
            0)
      << std::strerror(errno);
  EXPECT_THAT(CheckSocketModeFromSystemd(abstract.get(), 0660, euid),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("every user in the network namespace can connect")));
  EXPECT_OK(CheckSocketModeFromSystemd(abstract.get(), 0666, euid));
}

// connect(2) to the socket at `path` in a child running as `uid` and
// `gid` (no other groups): "connected", or the errno's text.
std::string ConnectAs(const std::string& path, uid_t uid, gid_t gid) {
  return capbroker::testing::RunInChild([&]() -> std::string {
           if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
               setresuid(uid, uid, uid) != 0) {
             return absl::StrCat("cannot become uid ", uid, ": ", std::strerror(errno));
           }
           absl::StatusOr<UniqueFd> connected = wire::ConnectSeqpacket(path);
           return connected.ok() ? "connected" : std::string(connected.status().message());
         })
      .output;
}

// Whoever a directory on the way lets past counts, not only the socket's
// group and the others: the members of a directory's group, and its owner.
// Each refusal is matched by a connect(2) of a user --socket-mode 0600
// would keep out (chown takes root).
TEST(CheckSocketModeFromSystemdTest, CountsWhomEveryDirectoryLetsIn) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to chown";
  constexpr uid_t kNobody = 65534, kAnother = 65533;
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string dir = open_tmp.Join("d");
  const std::string path = dir + "/s";
  ASSERT_NO_FATAL_FAILURE(MakeDirOwnedBy(dir, 0750, 0, kNobody));
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(fd.get(), path));
  ASSERT_EQ(listen(fd.get(), 8), 0);
  ASSERT_EQ(chmod(path.c_str(), 0666), 0);  // systemd's default SocketMode=, root:root
  // root:65534 0750: the directory's group may search it, and the socket
  // lets them write as others.
  EXPECT_EQ(ConnectAs(path, kNobody, kNobody), "connected");
  EXPECT_THAT(ConnectAs(path, kAnother, kAnother), HasSubstr("Permission denied"));
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("the members of group ", kNobody,
                                                    " may connect")),
                             Not(HasSubstr("every other user")))));
  // Group 65534 is not the socket's (root's): 0660 does not let it in.
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0660, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("the members of group ", kNobody))));
  EXPECT_THAT(CheckOthersCannotConnect(fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("the members of group ", kNobody))));
  // Given that group (SocketGroup=), the socket is meant for it.
  ASSERT_EQ(chown(path.c_str(), 0, kNobody), 0) << std::strerror(errno);
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0660, 0));
  EXPECT_OK(CheckOthersCannotConnect(fd.get()));
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("its group, gid ", kNobody))));
  // A 0700 directory of another user lets that user in.
  ASSERT_EQ(chown(path.c_str(), 0, 0), 0) << std::strerror(errno);
  ASSERT_EQ(chown(dir.c_str(), kAnother, 0), 0) << std::strerror(errno);
  ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
  EXPECT_EQ(ConnectAs(path, kAnother, kAnother), "connected");
  EXPECT_THAT(ConnectAs(path, kNobody, kNobody), HasSubstr("Permission denied"));
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(absl::StrCat("uid ", kAnother, ", owner of directory ",
                                                    dir, " may connect")),
                             HasSubstr("owned by root or the broker's user"))));
  EXPECT_THAT(CheckOthersCannotConnect(fd.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("uid ", kAnother, ", owner of directory "))));
  // Even with its mode shut to its owner too: the owner may chmod it back.
  ASSERT_EQ(chmod(dir.c_str(), 0000), 0);
  EXPECT_THAT(CheckSocketModeFromSystemd(fd.get(), 0600, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("uid ", kAnother, ", owner of directory "))));
  // The broker's user's own 0700 directory lets in no one else.
  ASSERT_EQ(chmod(dir.c_str(), 0700), 0);
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0600, kAnother));
  ASSERT_EQ(chown(dir.c_str(), 0, 0), 0) << std::strerror(errno);
  EXPECT_OK(CheckSocketModeFromSystemd(fd.get(), 0600, 0));
  EXPECT_OK(CheckOthersCannotConnect(fd.get()));
}

TEST(BoundSocketPathTest, ThePathOrNothing) {
  TempDir dir;
  UniqueFd bound(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_NO_FATAL_FAILURE(BindAt(bound.get(), dir.Join("s")));
  ASSERT_OK_AND_ASSIGN(std::string path, BoundSocketPath(bound.get()));
  EXPECT_EQ(path, dir.Join("s"));
  UniqueFd unnamed(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_OK_AND_ASSIGN(std::string none, BoundSocketPath(unnamed.get()));
  EXPECT_EQ(none, "");
  UniqueFd abstract(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un hidden = {};
  hidden.sun_family = AF_UNIX;
  std::memcpy(hidden.sun_path + 1, "capbroker-test", 14);
  ASSERT_EQ(bind(abstract.get(), reinterpret_cast<sockaddr*>(&hidden),
                 offsetof(sockaddr_un, sun_path) + 15),
            0);
  ASSERT_OK_AND_ASSIGN(std::string abstract_path, BoundSocketPath(abstract.get()));
  EXPECT_EQ(abstract_path, "");
  EXPECT_THAT(BoundSocketPath(-1), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("getsockname(fd=-1)")));
}

TEST(ListenerTest, DoesNotRemoveASocketThatReplacedIt) {
  TempDir dir;
  std::string path = dir.Join("s");
  {
    ASSERT_OK_AND_ASSIGN(Listener listener, Listener::Bind(path, std::nullopt));
    // Someone moves ours away and puts another file in its place.
    ASSERT_EQ(rename(path.c_str(), dir.Join("old").c_str()), 0);
    dir.WriteFile("s", "not ours");
  }
  EXPECT_EQ(access(path.c_str(), F_OK), 0);
}

class SystemdTest : public ::testing::Test {
 protected:
  void TearDown() override {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("LISTEN_PIDFDID");
    if (moved_) dup2(saved_, 3);
  }
  // Puts `fd` at 3 (and closes `fd`), keeping whatever was at 3.
  void PlaceAt3(int fd) {
    // `fd` may itself be 3: move it out of the way first.
    int high = fcntl(fd, F_DUPFD, 20);
    ASSERT_GE(high, 0);
    close(fd);
    saved_ = fcntl(3, F_DUPFD_CLOEXEC, 10);
    moved_ = true;
    ASSERT_EQ(dup2(high, 3), 3);
    close(high);
  }
  // Closes fd 3, keeping whatever was there.
  void CloseAt3() {
    saved_ = fcntl(3, F_DUPFD_CLOEXEC, 10);
    moved_ = true;
    close(3);
  }
  // Binds `fd` at `path`, listens, and passes it as systemd does: at 3,
  // with LISTEN_PID and LISTEN_FDS.
  void PassListening(int fd, const std::string& path) {
    ASSERT_NO_FATAL_FAILURE(BindAt(fd, path));
    ASSERT_EQ(listen(fd, 8), 0);
    PlaceAt3(fd);
    setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
  }
  int saved_ = -1;
  bool moved_ = false;
};

TEST_F(SystemdTest, NotActivatedWithoutVariables) {
  ASSERT_OK_AND_ASSIGN(std::optional<Listener> l, Listener::FromSystemd());
  EXPECT_FALSE(l.has_value());
}

TEST_F(SystemdTest, IgnoresSocketsMeantForAnotherProcess) {
  setenv("LISTEN_PID", "1", 1);
  setenv("LISTEN_FDS", "1", 1);
  setenv("LISTEN_FDNAMES", "broker", 1);
  setenv("LISTEN_PIDFDID", "1", 1);  // systemd 258 and later
  ASSERT_OK_AND_ASSIGN(std::optional<Listener> l, Listener::FromSystemd());
  EXPECT_FALSE(l.has_value());
  // Cleared for children, so that none takes them for its own.
  for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"}) {
    EXPECT_EQ(getenv(name), nullptr) << name;
  }
}

// systemd writes both numbers in decimal digits: anything else (which
// SimpleAtoi took) is refused, naming the variable, before fd 3 is looked
// at, and not read as the number it resembles.
TEST_F(SystemdTest, RefusesANumberThatIsNotDigitsAlone) {
  const std::string pid = absl::StrCat(getpid());
  struct Case {
    std::string pid;
    std::string fds;
    std::string refused;  // the variable and its value, as shown
  };
  for (const Case& c : {Case{pid, " 1", "LISTEN_FDS wants"},
                        Case{pid, "+1", "LISTEN_FDS wants"},
                        Case{pid, "01", "LISTEN_FDS wants"},
                        Case{pid, "1\n", "LISTEN_FDS wants"},
                        Case{absl::StrCat(" ", pid), "1", "LISTEN_PID wants"},
                        Case{absl::StrCat("+", pid), "1", "LISTEN_PID wants"},
                        Case{absl::StrCat(pid, " "), "1", "LISTEN_PID wants"}}) {
    SCOPED_TRACE(absl::StrCat("LISTEN_PID='", c.pid, "' LISTEN_FDS='", c.fds, "'"));
    setenv("LISTEN_PID", c.pid.c_str(), 1);
    setenv("LISTEN_FDS", c.fds.c_str(), 1);
    // The count made before the broker takes its socket reads them as
    // FromSystemd does: the same refusal, not "no socket".
    const absl::Status counted = SystemdSocketCount().status();
    EXPECT_THAT(counted, StatusIs(absl::StatusCode::kInvalidArgument,
                                  AllOf(HasSubstr(c.refused), HasSubstr("digits only"),
                                        Not(HasSubstr("\n")))));
    EXPECT_EQ(Listener::FromSystemd().status(), counted);
  }
}

TEST_F(SystemdTest, TakesAListeningSeqpacketSocket) {
  TempDir dir;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);  // systemd passes no CLOEXEC
  PassListening(fd, dir.Join("s"));
  ASSERT_OK_AND_ASSIGN(std::optional<Listener> l, Listener::FromSystemd());
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->fd(), 3);
  EXPECT_TRUE(l->path().empty());
  EXPECT_TRUE(testing::IsCloseOnExec(3));
  EXPECT_OK(wire::ConnectSeqpacket(dir.Join("s")));
}

// A socket from systemd takes fds unless its unit says
// AcceptFileDescriptors=no: the broker turns that off when it takes it, and
// says that connections made before (while no broker ran) may hold fds.
TEST_F(SystemdTest, ASocketThatTookFdsRefusesThemFromNowOn) {
  TempDir dir;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  if (!wire::TakesFds(fd).ok()) {
    close(fd);
    GTEST_SKIP() << "this kernel has no SO_PASSRIGHTS";
  }
  PassListening(fd, dir.Join("s"));
  ASSERT_OK_AND_ASSIGN(UniqueFd early, wire::ConnectSeqpacket(dir.Join("s")));
  ASSERT_OK_AND_ASSIGN(std::optional<Listener> l, Listener::FromSystemd());
  ASSERT_TRUE(l.has_value());
  EXPECT_OK(l->fd_refusal());
  EXPECT_TRUE(l->took_fds());
  ASSERT_OK_AND_ASSIGN(UniqueFd late, wire::ConnectSeqpacket(dir.Join("s")));
  EXPECT_EQ(SendFd(late.get(), STDIN_FILENO), EPERM);
  EXPECT_EQ(SendFd(early.get(), STDIN_FILENO), 0);  // made before: see BrokerLoop::Admit
}

// A unit's PassCredentials= or PassSecurity= would make every request come
// with a control message, which reads as fds: the broker turns them off.
TEST_F(SystemdTest, CredentialsPassedByTheUnitAreTurnedOff) {
  TempDir dir;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  const int on = 1;
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_PASSSEC, &on, sizeof(on)), 0);
  PassListening(fd, dir.Join("s"));
  ASSERT_OK_AND_ASSIGN(std::optional<Listener> l, Listener::FromSystemd());
  ASSERT_TRUE(l.has_value());
  for (int option : {SO_PASSCRED, SO_PASSSEC}) {
    int value = -1;
    socklen_t length = sizeof(value);
    ASSERT_EQ(getsockopt(3, SOL_SOCKET, option, &value, &length), 0);
    EXPECT_EQ(value, 0) << "option " << option;
  }
}

TEST_F(SystemdTest, ASocketThatRefusedFdsAlreadyIsNoNews) {
  TempDir dir;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  absl::Status refused = wire::RefuseFds(fd);
  if (!refused.ok()) {
    close(fd);
    GTEST_SKIP() << refused.message();
  }
  PassListening(fd, dir.Join("s"));
  ASSERT_OK_AND_ASSIGN(std::optional<Listener> l, Listener::FromSystemd());
  ASSERT_TRUE(l.has_value());
  EXPECT_OK(l->fd_refusal());
  EXPECT_FALSE(l->took_fds());
}

TEST_F(SystemdTest, RefusesTheWrongKindOfSocket) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  PlaceAt3(fd);
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_THAT(Listener::FromSystemd(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ListenSequentialPacket")));
}

// LISTEN_FDS=1 with nothing at fd 3 is no unit's doing: the error says that
// nothing was passed, not that a unit setting is wrong.
TEST_F(SystemdTest, SaysWhenNothingIsAtFd3) {
  CloseAt3();
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_THAT(Listener::FromSystemd(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("LISTEN_FDS=1 but fd 3 is not open"),
                             HasSubstr("passed no socket"),
                             Not(HasSubstr("ListenSequentialPacket")))));
}

// Another file than a socket at fd 3: the error is getsockopt's, with its
// errno, not a hint about a unit setting.
TEST_F(SystemdTest, SaysWhyFd3CannotBeAsked) {
  TempDir dir;
  PlaceAt3(open(dir.WriteFile("file", "").c_str(), O_RDONLY | O_CLOEXEC));
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_THAT(Listener::FromSystemd(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("getsockopt(3, SO_TYPE)"),
                             HasSubstr(std::strerror(ENOTSOCK)),
                             Not(HasSubstr("ListenSequentialPacket")))));
}

// Read before the broker takes its socket (--ready-fd must not be one of
// these fds), and left for FromSystemd (a number FromSystemd refuses is
// refused by both: RefusesANumberThatIsNotDigitsAlone).
TEST_F(SystemdTest, CountsTheSocketsPassedToThisProcess) {
  EXPECT_EQ(SystemdSocketCount().value_or(-1), 0);
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_EQ(SystemdSocketCount().value_or(-1), 1);
  // Any other count is refused here as FromSystemd refuses it, so that the
  // first check to read it reports it (flags.cc, daemon.cc).
  setenv("LISTEN_FDS", "2", 1);
  EXPECT_THAT(SystemdSocketCount(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("LISTEN_FDS=2: capbrokerd takes exactly one socket")));
  EXPECT_STREQ(getenv("LISTEN_FDS"), "2");  // left in place
  setenv("LISTEN_PID", "1", 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_EQ(SystemdSocketCount().value_or(-1), 0);  // meant for another process
}

// A .socket unit with Accept=yes passes each connection, connected, as fd 3:
// the socket has the right domain and type but does not listen. The hint
// names Accept= (the unit already has ListenSequentialPacket=).
TEST_F(SystemdTest, RefusesAConnectedSocketNamingAccept) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd peer(pair[1]);
  PlaceAt3(pair[0]);
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_THAT(Listener::FromSystemd(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("connected socket"), HasSubstr("Accept=yes"),
                             HasSubstr("Accept=no"), Not(HasSubstr("ListenSequentialPacket")))));
}

// A socket bound but neither listening nor connected is not a unit's
// Accept=yes connection: no .socket unit passes one. The error says what it
// is, not that the unit has Accept=yes.
TEST_F(SystemdTest, RefusesASocketNeitherListeningNorConnected) {
  TempDir dir;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress a, wire::MakeUnixAddress(dir.Join("s")));
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a.addr), a.length), 0);
  PlaceAt3(fd);
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "1", 1);
  EXPECT_THAT(Listener::FromSystemd(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("neither listening nor connected"),
                             HasSubstr("ListenSequentialPacket="), Not(HasSubstr("Accept=yes")),
                             Not(HasSubstr("connected socket")))));
}

TEST_F(SystemdTest, RefusesSeveralSockets) {
  setenv("LISTEN_PID", absl::StrCat(getpid()).c_str(), 1);
  setenv("LISTEN_FDS", "2", 1);
  EXPECT_THAT(Listener::FromSystemd(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one")));
}

}  // namespace
}  // namespace capbroker::server
