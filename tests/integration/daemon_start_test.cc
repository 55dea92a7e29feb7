// capbrokerd refuses to start, with one clear line, whenever it cannot
// serve exactly what it was told to: fail closed.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/syscall.h"
#include "sdk/base/unique_fd.h"
#include "sdk/wire/unix_socket.h"
#include "tests/fixtures/broker_process.h"
#include "tests/fixtures/fd_count.h"
#include "tests/fixtures/foreign_link.h"
#include "tests/fixtures/syscall_filter.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

struct Result {
  int exit_code = -1;
  std::string err;
  // It served instead (said READY=1 on $NOTIFY_SOCKET) and was stopped.
  bool served = false;
};

// Pointers to `strings`, null-terminated, for execv.
std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Runs capbrokerd with `args`, with fds 0 to 2 only, until it exits, and
// returns its exit code and stderr. A broker that serves instead of
// refusing to start says READY=1 on $NOTIFY_SOCKET, a socket of this
// test's: it is then stopped with SIGTERM and `served` is set, so that a
// test of a refusal fails rather than hangs. `in_child`, if given, runs in
// the child just before exec (async-signal-safe calls only).
Result RunDaemon(std::vector<std::string> args,
                 const std::function<void()>& in_child = nullptr) {
  args.insert(args.begin(), testing::RunfilePath("broker/capbrokerd"));
  TempDir dir;
  std::string notify_path = dir.Join("notify");
  absl::StatusOr<wire::UnixAddress> address = wire::MakeUnixAddress(notify_path);
  UniqueFd notify(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  int err[2];
  if (!address.ok() || !notify.valid() ||
      bind(notify.get(), reinterpret_cast<const sockaddr*>(&address->addr),
           address->length) != 0 ||
      pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "set-up failed: " << std::strerror(errno);
    return {};
  }
  std::vector<std::string> env = testing::BrokerEnvironment();
  env.push_back("NOTIFY_SOCKET=" + notify_path);
  std::vector<char*> argv = Pointers(args);
  std::vector<char*> envp = Pointers(env);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(err[1], 2);
    // As a clean supervisor starts it: nothing beyond the standard fds.
    syscall(SYS_close_range, 3, ~0U, 0);
    if (in_child) in_child();
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(err[1]);
  UniqueFd err_read(err[0]);
  UniqueFd exited(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  Result result;
  // Until it has exited and its stderr is read to the end; poll skips an
  // fd of -1.
  while (err_read.valid() || exited.valid()) {
    pollfd events[3] = {{err_read.get(), POLLIN, 0},
                        {notify.get(), POLLIN, 0},
                        {exited.get(), POLLIN, 0}};
    if (RetryEintr([&] { return poll(events, 3, -1); }) < 0) {
      ADD_FAILURE() << "poll: " << std::strerror(errno);
      kill(pid, SIGKILL);
      break;
    }
    if (events[0].revents != 0) {
      char buf[4096];
      ssize_t n = RetryEintr([&] { return read(err_read.get(), buf, sizeof(buf)); });
      if (n > 0) result.err.append(buf, static_cast<size_t>(n));
      if (n <= 0) err_read.reset();
    }
    if (events[1].revents != 0) {
      char buf[64];
      recv(notify.get(), buf, sizeof(buf), MSG_DONTWAIT);
      result.served = true;
      kill(pid, SIGTERM);
    }
    if (events[2].revents != 0) exited.reset();  // a pidfd polls readable at exit
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// A capbrokerd started without waiting for it: the read ends of its ready
// pipe (--ready-fd 3) and of its stderr.
struct Spawned {
  pid_t pid = -1;
  int ready = -1;
  int err = -1;
};

// `in_child` runs in the child just before exec; false makes it exit.
Spawned Spawn(std::vector<std::string> args,
              const std::function<bool()>& in_child = nullptr) {
  args.insert(args.begin(), testing::RunfilePath("broker/capbrokerd"));
  args.insert(args.end(), {"--ready-fd", "3"});
  int ready[2], err[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return {};
  std::vector<char*> argv = Pointers(args);
  std::vector<std::string> env = testing::BrokerEnvironment();
  std::vector<char*> envp = Pointers(env);
  pid_t pid = fork();
  if (pid == 0) {
    // What `in_child` sets (setenv) is added to this.
    environ = envp.data();
    dup2(err[1], 2);
    dup2(ready[1], 3);
    if (in_child && !in_child()) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(ready[1]);
  close(err[1]);
  return Spawned{pid, ready[0], err[0]};
}

// Reads `fd` until EOF, then closes it.
std::string ReadToEnd(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

int WaitExitCode(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

constexpr char kGoodPolicy[] =
    "( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
    "  principals = [ ( name = \"p\", match = ( anyUser = true ), grants = [ \"m\" ] ) ] )\n";

TEST(DaemonStartTest, RejectsABadPolicyWithItsLineAndColumn) {
  TempDir dir;
  std::string policy = dir.WriteFile(
      "policy.capnp",
      "( capabilities = [\n"
      "    ( name = \"m\", memory = ( sise = 16 ) ) ] )\n",
      0600);
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("policy.capnp:2:"));
  EXPECT_THAT(r.err, HasSubstr("sise"));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

// As reported: a policy that sets memoryMax or pidsMax passed, and a broker
// without --cgroup ran the service without the limit. Now such a broker
// refuses the policy whole, naming the service, the field and the fix.
TEST(DaemonStartTest, RejectsCgroupLimitsWithoutACgroup) {
  TempDir dir;
  std::string policy = dir.WriteFile(
      "policy.capnp",
      "( services = [ ( name = \"scanner\", command = [ \"/bin/true\" ],\n"
      "    limits = ( pidsMax = 64 ) ) ] )\n",
      0600);
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.served);
  EXPECT_THAT(r.err, HasSubstr("policy.capnp:2:26: service 'scanner': pidsMax needs a "
                               "cgroup, and this broker has none: start capbrokerd with "
                               "--cgroup DIR, a delegated cgroup v2 directory"));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

// A service's rlimit above the broker's own hard limit could never be set
// (every start would fail with EPERM): the broker refuses the policy at
// start, naming the limit it runs with, not any default.
TEST(DaemonStartTest, RejectsAServiceLimitAboveTheBrokersHardLimit) {
  TempDir dir;
  std::string policy = dir.WriteFile(
      "policy.capnp",
      "( services = [ ( name = \"scanner\", command = [ \"/bin/true\" ],\n"
      "    limits = ( openFiles = 600 ) ) ] )\n",
      0600);
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s")}, [] {
    const rlimit lowered{256, 512};
    if (setrlimit(RLIMIT_NOFILE, &lowered) != 0) _exit(126);
  });
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.served);
  EXPECT_THAT(r.err, HasSubstr("policy.capnp:2:28: service 'scanner': openFiles 600 is above "
                               "the broker's hard RLIMIT_NOFILE, 512, which no service's "
                               "limit can exceed"));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

// --cgroup DIR is checked at start: a directory that is missing, or not a
// cgroup v2 one, stops the broker with the reason and how to fix it.
TEST(DaemonStartTest, RefusesACgroupDirectoryItCannotUse) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  Result missing = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--cgroup",
                              "/nonexistent"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_FALSE(missing.served);
  EXPECT_THAT(missing.err, HasSubstr("--cgroup /nonexistent: no such directory; give "
                                     "--cgroup a cgroup v2 directory"));
  Result plain = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--cgroup",
                            dir.path()});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_FALSE(plain.served);
  EXPECT_THAT(plain.err, HasSubstr(absl::StrCat("--cgroup ", dir.path(),
                                                ": not a cgroup v2 directory")));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

TEST(DaemonStartTest, RejectsAPolicyOthersCanWrite) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0666);
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("writable"));
}

TEST(DaemonStartTest, RejectsAMissingPolicy) {
  TempDir dir;
  Result r = RunDaemon({"--policy", dir.Join("nope"), "--socket", dir.Join("s")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("nope"));
}

TEST(DaemonStartTest, RefusesToDisplaceALiveBroker) {
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::Start(kGoodPolicy));
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  Result r = RunDaemon({"--policy", policy, "--socket", broker->socket_path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("another capbrokerd holds the lock"));
  // The first broker's socket is untouched.
  EXPECT_EQ(access(broker->socket_path().c_str(), F_OK), 0);
}

// Two brokers started at once on one path: one serves, the other says that
// the first holds the lock, and never touches its socket. (Without the lock
// the second could take the first's socket, bound and not yet listening,
// for stale and replace it: both would run, one unreachable.)
TEST(DaemonStartTest, OfTwoBrokersStartedAtOnceExactlyOneServes) {
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir;
    std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
    std::string socket = dir.Join("s");
    std::vector<std::string> args = {"--policy", policy, "--socket", socket};
    Spawned brokers[2] = {Spawn(args), Spawn(args)};
    ASSERT_GT(brokers[0].pid, 0);
    ASSERT_GT(brokers[1].pid, 0);
    // The ready pipe gives READY, or EOF when that broker exits: an event
    // either way.
    bool ready[2] = {ReadToEnd(brokers[0].ready) == "READY\n",
                     ReadToEnd(brokers[1].ready) == "READY\n"};
    ASSERT_NE(ready[0], ready[1]) << "round " << round << ": "
                                  << (ready[0] ? "both served" : "neither served");
    Spawned& winner = ready[0] ? brokers[0] : brokers[1];
    Spawned& loser = ready[0] ? brokers[1] : brokers[0];
    EXPECT_EQ(WaitExitCode(loser.pid), 1);
    EXPECT_THAT(ReadToEnd(loser.err),
                HasSubstr("another capbrokerd holds the lock " + socket + ".lock"));
    // The socket at the path is the winner's (its listener's credentials).
    ASSERT_OK_AND_ASSIGN(UniqueFd client, wire::ConnectSeqpacket(socket));
    ucred cred{};
    socklen_t len = sizeof(cred);
    ASSERT_EQ(getsockopt(client.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
    EXPECT_EQ(cred.pid, winner.pid);
    kill(winner.pid, SIGTERM);
    EXPECT_EQ(WaitExitCode(winner.pid), 0);
    ReadToEnd(winner.err);
    EXPECT_NE(access(socket.c_str(), F_OK), 0);
    EXPECT_NE(access((socket + ".lock").c_str(), F_OK), 0);
  }
}

TEST(DaemonStartTest, ClearErrorsForBadSocketPaths) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  Result too_long = RunDaemon({"--policy", policy, "--socket", dir.Join(std::string(120, 'x'))});
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_THAT(too_long.err, HasSubstr("sun_path"));
  Result missing = RunDaemon({"--policy", policy, "--socket", dir.Join("a/b/s")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("does not exist"));
}

TEST(DaemonStartTest, RefusesASocketDirectoryOthersCanWrite) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::string run = dir.Join("run");
  ASSERT_EQ(mkdir(run.c_str(), 0700), 0);
  ASSERT_EQ(chmod(run.c_str(), 01777), 0);
  Result r = RunDaemon({"--policy", policy, "--socket", run + "/s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("socket directory " + run + " is writable by other users"));
  EXPECT_THAT(r.err, HasSubstr("mode 01777"));
  EXPECT_NE(access((run + "/s").c_str(), F_OK), 0) << "must not have listened";
}

// As reported: in a sticky /tmp, another user links a name to a directory
// root would accept. Were the broker to start there, they could re-point
// the link at a directory of their own and serve clients an impostor.
TEST(DaemonStartTest, RefusesASocketPathThroughAnotherUsersSymlink) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::optional<testing::ForeignLink> foreign = testing::MakeForeignLink(dir);
  if (!foreign.has_value()) GTEST_SKIP() << "cannot give a link away here: " << errno;
  std::string socket = foreign->link + "/broker.sock";
  Spawned broker = Spawn({"--policy", policy, "--socket", socket});
  ASSERT_GT(broker.pid, 0);
  // READY, or end of file when it exits: an event either way.
  std::string ready = ReadToEnd(broker.ready);
  if (!ready.empty()) kill(broker.pid, SIGTERM);
  EXPECT_EQ(ready, "") << "it served through another user's symlink";
  EXPECT_EQ(WaitExitCode(broker.pid), 1);
  EXPECT_THAT(ReadToEnd(broker.err),
              HasSubstr("symlink " + foreign->link + " -> " + foreign->target +
                        ", on the path to the socket " + socket + ", is owned by uid 65534"));
}

// A SIGHUP (a log rotation, a reload), SIGTERM or SIGINT that lands while
// the broker is still starting must not kill it by its default action. A
// seccomp trap stops the broker in the open of its policy file; the test
// sends SIGHUP there, then lets the open go on. The broker serves, and
// handles the SIGHUP, which waited pending, as a reload once it does.
// Reads `fd` until a whole line holding `text` has arrived, or end of file,
// or `seconds` pass (a guard: the line comes far sooner); all read.
std::string ReadUntilLineWith(int fd, const std::string& text, int seconds) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (true) {
    size_t at = out.find(text);
    if (at != std::string::npos && out.find('\n', at) != std::string::npos) return out;
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    pollfd event = {fd, POLLIN, 0};
    if (left <= 0 || RetryEintr([&] { return poll(&event, 1, left); }) <= 0) return out;
    char buf[4096];
    ssize_t n = RetryEintr([&] { return read(fd, buf, sizeof(buf)); });
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// A broker spawned with the open of its policy held by a seccomp trap:
// LoadPolicyFile opens the policy with exactly these flags, and nothing else
// the broker opens before serving uses them. `call` is that open.
struct HeldBroker {
  Spawned broker;
  std::optional<testing::SyscallTrap> trap;
  uint64_t call = 0;
};

// A broker spawned with `args` and `filter`, held at the first call the
// filter traps.
void SpawnHeld(std::vector<std::string> args, const testing::SyscallFilter& filter,
               HeldBroker& held) {
  int channel[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel), 0);
  UniqueFd trap_end(channel[0]);
  held.broker = Spawn(std::move(args), [&] {
    int listener = filter.Install(true);
    return listener >= 0 && testing::SyscallTrap::SendListener(channel[1], listener);
  });
  close(channel[1]);
  ASSERT_GT(held.broker.pid, 0);
  ASSERT_OK_AND_ASSIGN(testing::SyscallTrap trap,
                       testing::SyscallTrap::ReceiveListener(trap_end.get()));
  held.trap.emplace(std::move(trap));
  // The broker's ready pipe becoming readable first means the trap missed
  // (the call's arguments changed): Next fails rather than waits.
  ASSERT_OK_AND_ASSIGN(held.call, held.trap->Next(held.broker.ready));
}

void SpawnHeldAtPolicyOpen(const std::string& policy, const std::string& socket,
                           HeldBroker& held) {
  constexpr uint32_t kPolicyOpenFlags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
  SpawnHeld({"--policy", policy, "--socket", socket},
            testing::SyscallFilter(__NR_openat, 2, kPolicyOpenFlags, SECCOMP_RET_USER_NOTIF),
            held);
}

// A broker that stops removes its lock file while it still holds the lock.
// One that opened that file before, and locks it after, holds a lock on a
// file no other broker will open: it must look again (Listener's TakeLock
// compares the file it locked with the one at the path). Here broker A is
// held between its open of the lock file and its flock, the file is
// removed, and broker B takes a new one and is held just before listen(),
// bound: a broker that kept its lock on the old file took B's socket for
// stale, replaced it, and both said READY, B listening where no client can
// reach it. A must find B's lock and stop.
TEST(DaemonStartTest, ABrokerThatLockedARemovedLockFileLooksAgain) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  const std::string socket = dir.Join("s");
  const std::vector<std::string> args = {"--policy", policy, "--socket", socket};
  HeldBroker a, b;
  ASSERT_NO_FATAL_FAILURE(SpawnHeld(
      args, testing::SyscallFilter(__NR_flock, 1, LOCK_EX | LOCK_NB, SECCOMP_RET_USER_NOTIF),
      a));
  ASSERT_EQ(unlink((socket + ".lock").c_str()), 0) << std::strerror(errno);
  constexpr uint32_t kBacklog = 1024;  // Listener::Bind's listen(2) backlog
  ASSERT_NO_FATAL_FAILURE(SpawnHeld(
      args, testing::SyscallFilter(__NR_listen, 1, kBacklog, SECCOMP_RET_USER_NOTIF), b));
  absl::Status a_continued = a.trap->Continue(a.call);
  absl::Status a_rest = absl::OkStatus();
  std::thread answer_a([&] { a_rest = a.trap->ContinueAll(); });  // its flock of the new file
  // READY, or end of file when it exits.
  const bool a_served = ReadToEnd(a.broker.ready) == "READY\n";
  absl::Status b_continued = b.trap->Continue(b.call);
  const bool b_served = ReadToEnd(b.broker.ready) == "READY\n";
  // Whose socket is at the path (its listener's credentials).
  pid_t listening = -1;
  if (absl::StatusOr<UniqueFd> client = wire::ConnectSeqpacket(socket); client.ok()) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(client->get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) listening = cred.pid;
  }
  if (a_served) kill(a.broker.pid, SIGTERM);
  const int a_code = WaitExitCode(a.broker.pid);
  answer_a.join();  // ContinueAll ends once A is reaped
  const std::string a_err = ReadToEnd(a.broker.err);
  kill(b.broker.pid, SIGTERM);
  const int b_code = WaitExitCode(b.broker.pid);
  ReadToEnd(b.broker.err);
  EXPECT_OK(a_continued);
  EXPECT_OK(a_rest);
  EXPECT_OK(b_continued);
  EXPECT_FALSE(a_served) << "both brokers served";
  EXPECT_TRUE(b_served);
  EXPECT_EQ(listening, b.broker.pid);
  EXPECT_EQ(a_code, 1);
  EXPECT_THAT(a_err, HasSubstr("another capbrokerd holds the lock " + socket + ".lock"));
  EXPECT_EQ(b_code, 0);
}

TEST(DaemonStartTest, SighupWhileLoadingThePolicyIsHandledOnceServing) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  HeldBroker held;
  ASSERT_NO_FATAL_FAILURE(SpawnHeldAtPolicyOpen(policy, dir.Join("s"), held));
  Spawned& broker = held.broker;
  testing::SyscallTrap& trap = *held.trap;
  const uint64_t call = held.call;
  ASSERT_EQ(kill(broker.pid, SIGHUP), 0);
  // Were SIGHUP not blocked, its default action would have killed the
  // broker as it was sent (the kernel marks the whole process for exit when
  // it sends a fatal signal), and it would never serve. Blocked, the signal
  // waits pending and the call is still there to continue.
  absl::Status continued = trap.Continue(call);
  // The reload's open of the policy is trapped too.
  absl::Status rest = absl::OkStatus();
  std::thread answer([&] { rest = trap.ContinueAll(); });
  std::string ready = ReadToEnd(broker.ready);
  // Not before the reload: a SIGTERM pending with the SIGHUP stops the
  // broker without one (SighupAndSigtermPendingTogetherStopWithoutAReload).
  std::string err = ReadUntilLineWith(broker.err, "capbrokerd: SIGHUP: ", 30);
  kill(broker.pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(broker.pid, &status, 0), broker.pid);
  answer.join();  // ContinueAll ends once the broker is reaped
  err += ReadToEnd(broker.err);
  EXPECT_OK(continued);
  EXPECT_OK(rest);
  EXPECT_EQ(ready, "READY\n");
  EXPECT_FALSE(WIFSIGNALED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_THAT(err, HasSubstr("capbrokerd: SIGHUP: policy " + policy + " reloaded"));
}

// SIGHUP and SIGTERM pending together: the signalfd yields the lower
// number (SIGHUP) first, but a broker told to stop must not reload (and
// maybe start services) on its way out.
TEST(DaemonStartTest, SighupAndSigtermPendingTogetherStopWithoutAReload) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  // Held at the policy's open while both signals are sent: blocked, they
  // wait pending together.
  HeldBroker held;
  ASSERT_NO_FATAL_FAILURE(SpawnHeldAtPolicyOpen(policy, dir.Join("s"), held));
  Spawned& broker = held.broker;
  testing::SyscallTrap& trap = *held.trap;
  const uint64_t call = held.call;
  ASSERT_EQ(kill(broker.pid, SIGTERM), 0);
  ASSERT_EQ(kill(broker.pid, SIGHUP), 0);
  absl::Status continued = trap.Continue(call);
  // A reload would open the policy again: answered, so that it shows.
  absl::Status rest = absl::OkStatus();
  std::thread answer([&] { rest = trap.ContinueAll(); });
  std::string ready = ReadToEnd(broker.ready);
  int status = 0;
  ASSERT_EQ(waitpid(broker.pid, &status, 0), broker.pid);
  answer.join();
  std::string err = ReadToEnd(broker.err);
  EXPECT_OK(continued);
  EXPECT_OK(rest);
  EXPECT_EQ(ready, "READY\n");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << err;
  EXPECT_THAT(err, HasSubstr("capbrokerd: stopping"));
  EXPECT_THAT(err, Not(HasSubstr("SIGHUP")));
}


// SIGCHLD ignored is inherited across execve (a supervisor, a shell script
// that set it). With it, the kernel reaps the broker's children at once and
// waitid on a service's pidfd fails with ECHILD: every exit would be "not
// known", a failure, until the restart limit. The broker sets it back to
// its default action at start.
TEST(DaemonStartTest, AServicesExitIsKnownWhenStartedWithSigchldIgnored) {
  if (geteuid() != 0) GTEST_SKIP() << "runs a service, as nobody";
  TempDir dir;
  std::string policy = dir.WriteFile(
      "policy.capnp",
      "( services = [ ( name = \"once\", command = [ \"/bin/true\" ],\n"
      "    activation = atStart, restart = never ) ] )\n",
      0600);
  Spawned broker = Spawn({"--policy", policy, "--socket", dir.Join("s")}, [] {
    return signal(SIGCHLD, SIG_IGN) != SIG_ERR;
  });
  ASSERT_GT(broker.pid, 0);
  std::string err = ReadUntilLineWith(broker.err, "service 'once': exited (", 20);
  std::string status = testing::ReadWholeFile(absl::StrCat("/proc/", broker.pid, "/status"));
  kill(broker.pid, SIGTERM);
  EXPECT_EQ(WaitExitCode(broker.pid), 0);
  close(broker.ready);
  close(broker.err);
  EXPECT_THAT(err, HasSubstr("service 'once': exited (exit status 0)"));
  // SigIgn: the ignored signals, a hexadecimal mask with bit N-1 for signal N.
  size_t at = status.find("SigIgn:\t");
  ASSERT_NE(at, std::string::npos) << status;
  uint64_t ignored = std::stoull(status.substr(at + 8, 16), nullptr, 16);
  EXPECT_EQ(ignored & (uint64_t{1} << (SIGCHLD - 1)), 0u) << status.substr(at, 25);
}

// What a broker started with `args` and, as its --ready-fd 3, a pipe whose
// read end is closed (nobody reads it, ever: the write of READY fails with
// EPIPE) wrote on stderr until it exited, and its exit code.
struct Exit {
  int code = -1;
  std::string err;
};

Exit RunWithAnUnreadReadyFd(std::vector<std::string> args) {
  int unread[2];
  if (pipe2(unread, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return {};
  }
  close(unread[0]);
  Spawned broker = Spawn(std::move(args), [&] {
    return dup2(unread[1], 3) == 3;  // in place of Spawn's ready pipe
  });
  close(unread[1]);
  if (broker.pid <= 0) {
    ADD_FAILURE() << "cannot start capbrokerd";
    return {};
  }
  close(broker.ready);
  Exit exit;
  exit.err = ReadToEnd(broker.err);
  exit.code = WaitExitCode(broker.pid);
  return exit;
}

// As reported: lines recorded after the audit log's last flush were lost
// when the broker returned early. Its at-start service's start grant is on
// record as granted (written before the launch); then --ready-fd cannot be
// written (nobody reads it: EPIPE), the broker exits, and the launch it
// gives up, or that failed already (the program cannot run), is put on
// record as not delivered: that line used to stay in the buffer.
TEST(DaemonStartTest, WhatWasRecordedIsWrittenWhenTheReadyFdCannotBe) {
  if (geteuid() != 0) GTEST_SKIP() << "starts a service, as nobody";
  TempDir dir;
  // Not executable: the start can never deliver its grant.
  std::string program = dir.WriteFile("not-a-program", "", 0644);
  std::string policy = dir.WriteFile(
      "policy.capnp",
      absl::StrCat("( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
                   "  services = [ ( name = \"svc\", command = [ \"", program, "\" ],\n"
                   "    activation = atStart, restart = never, grants = [ \"m\" ] ) ] )\n"),
      0600);
  std::string log = dir.Join("audit.log");
  Exit broker =
      RunWithAnUnreadReadyFd({"--policy", policy, "--socket", dir.Join("s"), "--audit-log", log});
  EXPECT_EQ(broker.code, 1) << broker.err;
  EXPECT_THAT(broker.err, HasSubstr("capbrokerd: not serving: write(ready fd 3): Broken pipe"));
  std::vector<std::string> start;
  for (absl::string_view line : absl::StrSplit(testing::ReadWholeFile(log), '\n')) {
    if (absl::StrContains(line, R"("kind":"start")")) start.emplace_back(line);
  }
  ASSERT_EQ(start.size(), 2u) << testing::ReadWholeFile(log);
  EXPECT_THAT(start[0], HasSubstr(R"("decision":"granted","principal":"svc")"));
  EXPECT_THAT(start[1], HasSubstr(R"("decision":"denied","principal":"svc","reason":"not delivered: )"));
}

// As reported: "capbrokerd: serving ..." was printed before READY was
// written to --ready-fd, and that write can fail (nobody reads the pipe any
// more): the log said it served, then the broker exited 1. It says it
// serves only once the supervisor was told, and says why it does not.
TEST(DaemonStartTest, SaysServingOnlyOnceTheReadyFdWasWritten) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  Exit broker = RunWithAnUnreadReadyFd({"--policy", policy, "--socket", dir.Join("s")});
  EXPECT_EQ(broker.code, 1) << broker.err;
  EXPECT_THAT(broker.err, HasSubstr("capbrokerd: not serving: write(ready fd 3): Broken pipe\n"));
  EXPECT_THAT(broker.err, Not(HasSubstr("capbrokerd: serving")));
  // Told, it says so.
  Spawned served = Spawn({"--policy", policy, "--socket", dir.Join("s")});
  ASSERT_GT(served.pid, 0);
  EXPECT_EQ(ReadToEnd(served.ready), "READY\n");
  std::string line = ReadUntilLineWith(served.err, "capbrokerd: serving", 30);
  kill(served.pid, SIGTERM);
  EXPECT_EQ(WaitExitCode(served.pid), 0);
  close(served.err);
  EXPECT_THAT(line, HasSubstr("capbrokerd: serving " + dir.Join("s") + " with policy "));
}

// The flags of `fd` in process `pid`, from /proc/PID/fdinfo/FD ("flags:"
// in octal, O_CLOEXEC included); nullopt if it cannot be read.
std::optional<unsigned long> FdInfoFlags(pid_t pid, int fd) {
  std::string info = testing::ReadWholeFile(absl::StrCat("/proc/", pid, "/fdinfo/", fd));
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    if (!absl::ConsumePrefix(&line, "flags:")) continue;
    std::string digits(absl::StripLeadingAsciiWhitespace(line));
    char* end = nullptr;
    unsigned long flags = std::strtoul(digits.c_str(), &end, 8);
    if (digits.empty() || *end != '\0') return std::nullopt;
    return flags;
  }
  return std::nullopt;
}

// No fd of the serving broker's beyond stdin, stdout and stderr may pass to
// a program it execs: its own (signalfd, epoll, listener, lock file, audit
// log, ...) and whatever it inherited. A shell, a script or a CI runner
// may leave stray fds open across the exec of capbrokerd: here a pipe's
// write end at fd 10, without close-on-exec. The broker keeps it open (a
// wrapper may rely on that: a lock held through an fd, a pipe whose end of
// file says the broker exited) but makes it close-on-exec.
TEST(DaemonStartTest, EveryFdOfTheBrokerIsCloseOnExec) {
  constexpr int kStrayFd = 10;
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::string log = dir.Join("audit.log");
  int stray_pipe[2];
  ASSERT_EQ(pipe2(stray_pipe, O_CLOEXEC), 0);
  UniqueFd stray_read(stray_pipe[0]);
  // Above kStrayFd, so that the dup2 below makes a new fd (a dup2 onto
  // itself would leave O_CLOEXEC set).
  UniqueFd stray_write(fcntl(stray_pipe[1], F_DUPFD_CLOEXEC, 100));
  close(stray_pipe[1]);
  ASSERT_TRUE(stray_write.valid()) << std::strerror(errno);
  Spawned broker = Spawn({"--policy", policy, "--socket", dir.Join("s"), "--audit-log", log},
                         [&] { return dup2(stray_write.get(), kStrayFd) == kStrayFd; });
  ASSERT_GT(broker.pid, 0);
  stray_write.reset();
  ASSERT_EQ(ReadToEnd(broker.ready), "READY\n");
  const std::map<int, std::string> fds = testing::OpenFdTargets(broker.pid);
  std::vector<std::string> inheritable;
  for (const auto& [fd, target] : fds) {
    if (fd < 3) continue;
    std::optional<unsigned long> flags = FdInfoFlags(broker.pid, fd);
    if (!flags.has_value() || (*flags & O_CLOEXEC) == 0) {
      inheritable.push_back(absl::StrCat(fd, " -> ", target));
    }
  }
  kill(broker.pid, SIGTERM);
  EXPECT_EQ(WaitExitCode(broker.pid), 0);
  close(broker.err);
  std::string stray_target = "(not open)";
  if (auto it = fds.find(kStrayFd); it != fds.end()) stray_target = it->second;
  const std::string self_stray = testing::OpenFdTargets()[stray_read.get()];
  // As the kernel names it: TEST_TMPDIR may lie under a symlink.
  std::unique_ptr<char, decltype(&free)> real_log(realpath(log.c_str(), nullptr), &free);
  ASSERT_NE(real_log, nullptr) << std::strerror(errno);
  bool audit_log_seen = false;
  for (const auto& [fd, target] : fds) audit_log_seen |= target == real_log.get();
  EXPECT_THAT(inheritable, ::testing::IsEmpty()) << "fds without close-on-exec";
  // Kept open: the same pipe as the test's read end.
  EXPECT_EQ(stray_target, self_stray) << "the inherited fd " << kStrayFd << " was closed";
  EXPECT_TRUE(audit_log_seen) << "the audit log was not among the fds checked";
}

// Started with standard fds closed, the broker's first fds would take their
// numbers, and whatever it writes to stdout and stderr (log lines, and
// audit lines without --audit-log) would go into them: its audit file, its
// signalfd, a socket. It puts /dev/null there before anything else.
TEST(DaemonStartTest, StartsWithClosedStandardFdsSafely) {
  constexpr char kPolicy[] =
      "( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
      "  principals = [ ( name = \"p\", match = ( uid = $UID ), grants = [ \"m\" ] ) ] )\n";
  for (std::vector<int> closed : {std::vector<int>{1, 2}, std::vector<int>{0, 1, 2}}) {
    testing::BrokerOptions options;
    options.closed_stdio = closed;
    ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kPolicy, options));
    for (int fd : closed) {
      char target[256] = {};
      std::string link = absl::StrCat("/proc/", broker->pid(), "/fd/", fd);
      ASSERT_GT(readlink(link.c_str(), target, sizeof(target) - 1), 0) << link;
      EXPECT_EQ(std::string(target), "/dev/null") << "fd " << fd;
    }
    // It serves, and its audit lines go where they were told to.
    ASSERT_OK_AND_ASSIGN(UniqueFd raw, wire::ConnectSeqpacket(broker->socket_path()));
    raw.reset();
    ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

// A broker run as root serves every local user unless told otherwise. One
// whose socket other users cannot reach (a directory on the way they may
// not search) says so at start, rather than leave their clients with
// connect's "Permission denied". Not when the way is open, nor when
// --socket-mode says that the socket is not for everyone.
TEST(DaemonStartTest, WarnsWhenOtherUsersCannotReachARootBrokersSocket) {
  if (geteuid() != 0) GTEST_SKIP() << "the warning is for a broker run as root";
  constexpr char kPolicy[] =
      "( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
      "  principals = [ ( name = \"p\", match = ( uid = $UID ), grants = [ \"m\" ] ) ] )\n";
  // Open all the way: a directory of its own in /tmp, mode 0755.
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  struct Case {
    const char* what;
    std::vector<std::string> args;
    std::string socket;  // empty: in the broker's own directory, 0700
    bool warns;
  };
  for (const Case& c : std::vector<Case>{
           {"in a 0700 directory", {}, "", true},
           {"in a 0700 directory, for its users only", {"--socket-mode", "0600"}, "", false},
           {"open all the way", {}, open_dir + "/broker.sock", false}}) {
    SCOPED_TRACE(c.what);
    testing::BrokerOptions options;
    options.capture_stderr = true;
    options.extra_args = c.args;
    options.socket_path = c.socket;
    ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kPolicy, options));
    std::string err = broker->Stderr();  // written before it said it was ready
    if (c.warns) {
      EXPECT_THAT(err, HasSubstr("capbrokerd: warning: directory "));
      EXPECT_THAT(err, HasSubstr("mode 0700) keeps other users from the socket " +
                                 broker->socket_path()));
      EXPECT_THAT(err, HasSubstr("--socket-mode"));
    } else {
      EXPECT_THAT(err, Not(HasSubstr("warning")));
    }
    ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

// A directory above the socket's own that other users may not search keeps
// out every group as well: the warning names that directory, and does not
// suggest a setgid socket directory, which would not let a group in.
TEST(DaemonStartTest, TheWarningNamesTheDirectoryAboveTheSocketThatBlocks) {
  if (geteuid() != 0) GTEST_SKIP() << "the warning is for a broker run as root";
  constexpr char kPolicy[] =
      "( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
      "  principals = [ ( name = \"p\", match = ( uid = $UID ), grants = [ \"m\" ] ) ] )\n";
  TempDir dir;  // 0700
  std::unique_ptr<char, decltype(&free)> real(realpath(dir.path().c_str(), nullptr), &free);
  ASSERT_NE(real, nullptr);
  std::string priv = real.get();
  testing::BrokerOptions options;
  options.capture_stderr = true;
  options.socket_path = priv + "/sock/b.sock";
  ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kPolicy, options));
  std::string err = broker->Stderr();
  EXPECT_THAT(err, HasSubstr(absl::StrCat("capbrokerd: warning: directory ", priv,
                                          " (owner uid 0, mode 0700) keeps other users from "
                                          "the socket ")));
  EXPECT_THAT(err, HasSubstr("chmod o+x " + priv + ")"));
  EXPECT_THAT(err, Not(HasSubstr("chgrp")));
  EXPECT_THAT(err, Not(HasSubstr("chmod 2750")));
  ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// --socket-mode 0660 means one group; a root broker's socket has root's
// group unless its directory is setgid with another. Said at start, with
// the ways to choose the group that last (/run is emptied at boot).
TEST(DaemonStartTest, WarnsWhenASocketForOneGroupHasRootsGroup) {
  if (geteuid() != 0 || getegid() != 0) GTEST_SKIP() << "the warning is for a root broker";
  constexpr char kPolicy[] =
      "( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
      "  principals = [ ( name = \"p\", match = ( uid = $UID ), grants = [ \"m\" ] ) ] )\n";
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  std::string plain = dir.Join("plain");
  std::string setgid = dir.Join("setgid");
  ASSERT_EQ(mkdir(plain.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(setgid.c_str(), 0700), 0);
  ASSERT_EQ(chown(setgid.c_str(), 0, 65534), 0);
  ASSERT_EQ(chmod(setgid.c_str(), 02750), 0);
  for (const std::string& socket_dir : {plain, setgid}) {
    SCOPED_TRACE(socket_dir);
    testing::BrokerOptions options;
    options.capture_stderr = true;
    options.socket_path = socket_dir + "/b.sock";
    options.extra_args = {"--socket-mode", "0660"};
    ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kPolicy, options));
    std::string err = broker->Stderr();
    if (socket_dir == plain) {
      EXPECT_THAT(err, HasSubstr(absl::StrCat("capbrokerd: warning: --socket-mode 0660 lets the "
                                              "socket's group connect, but the socket ",
                                              plain, "/b.sock has root's group (gid 0)")));
      EXPECT_THAT(err, HasSubstr(absl::StrCat("chgrp GROUP ", plain, " && chmod 2750 ", plain)));
      EXPECT_THAT(err, HasSubstr(absl::StrCat("d ", plain, " 2750 root GROUP -")));
      EXPECT_THAT(err, HasSubstr("SocketGroup=GROUP"));
    } else {
      EXPECT_THAT(err, Not(HasSubstr("warning")));
    }
    ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

// A directory of its own under /tmp for a test's socket, given to `uid`:`gid`
// with `mode`; removed, with what is left in it, at the end of the test.
class OwnedDir {
 public:
  OwnedDir(uid_t uid, gid_t gid, mode_t mode) {
    if (chown(dir_.path().c_str(), uid, gid) != 0 || chmod(dir_.path().c_str(), mode) != 0) {
      ADD_FAILURE() << "cannot give " << dir_.path() << " away: " << std::strerror(errno);
    }
  }
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_{TempDir::OpenToOthers{}};
};

// A nobody's uid and gid, which no file here belongs to.
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

constexpr char kUidPolicy[] =
    "( capabilities = [ ( name = \"m\", memory = ( size = 16 ) ) ],\n"
    "  principals = [ ( name = \"p\", match = ( uid = $UID ), grants = [ \"m\" ] ) ] )\n";

// A broker run by a user serves that user alone unless --socket-mode with
// o+w says every local user is meant to connect. Then, as for root's, a
// directory on the way that others may not search is said at start.
TEST(DaemonStartTest, WarnsWhenOtherUsersCannotReachAUsersBrokerMeantForThem) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to start the broker as another user";
  OwnedDir open(kNobody, kNogroup, 0755);
  const std::string priv = open.path() + "/priv";
  ASSERT_EQ(mkdir(priv.c_str(), 0700), 0);
  ASSERT_EQ(chown(priv.c_str(), kNobody, kNogroup), 0);
  struct Case {
    const char* what;
    std::string socket;
    std::vector<std::string> args;
    bool warns;
  };
  for (const Case& c : std::vector<Case>{
           {"for everyone, in a 0700 directory", priv + "/b.sock", {"--socket-mode", "0666"},
            true},
           {"for everyone, open all the way", open.path() + "/b.sock", {"--socket-mode", "0666"},
            false},
           {"for its user alone, in a 0700 directory", priv + "/b.sock", {}, false}}) {
    SCOPED_TRACE(c.what);
    testing::BrokerOptions options;
    options.capture_stderr = true;
    options.socket_path = c.socket;
    options.extra_args = c.args;
    options.user = testing::BrokerOptions::User{kNobody, kNogroup};
    ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kUidPolicy, options));
    std::string err = broker->Stderr();  // written before it said it was ready
    if (c.warns) {
      EXPECT_THAT(err, HasSubstr(absl::StrCat("capbrokerd: warning: directory ", priv,
                                              " (owner uid 65534, mode 0700) keeps other users "
                                              "from the socket ", c.socket)));
      EXPECT_THAT(err, HasSubstr("--socket-mode 0666 lets every local user connect"));
      EXPECT_THAT(err, HasSubstr("chmod o+x " + priv));
    } else {
      EXPECT_THAT(err, Not(HasSubstr("warning")));
    }
    ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

// --socket-mode 0660 means the socket's group: the group of a setgid
// directory. A directory on the way that the group's members may not
// search (no g+x where it has that group, no o+x where it has another) is
// said at start, naming the directory and the chmod (or chgrp) that opens
// it, rather than leave them with "Permission denied".
TEST(DaemonStartTest, WarnsWhenTheSocketsGroupCannotReachIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give directories a group";
  OwnedDir open(0, 0, 0755);
  const std::string reachable = open.path() + "/reachable";  // 02750 root:nogroup
  const std::string closed = open.path() + "/closed";        // 02700 root:nogroup
  const std::string above = open.path() + "/above";          // 0750 root:root
  const std::string below = above + "/sock";                 // 02750 root:nogroup
  for (const auto& [dir, mode, group] :
       std::vector<std::tuple<std::string, mode_t, gid_t>>{{reachable, 02750, kNogroup},
                                                           {closed, 02700, kNogroup},
                                                           {above, 0750, 0},
                                                           {below, 02750, kNogroup}}) {
    ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
    ASSERT_EQ(chown(dir.c_str(), 0, group), 0);
    ASSERT_EQ(chmod(dir.c_str(), mode), 0);
  }
  struct Case {
    std::string socket_dir;
    std::string warning;  // empty: none
    std::string fix;
  };
  for (const Case& c : std::vector<Case>{
           {reachable, "", ""},
           {closed,
            absl::StrCat("capbrokerd: warning: directory ", closed,
                         " (owner uid 0, group 65534, mode 02700) keeps the members of group "
                         "65534, the socket's, from the socket ", closed,
                         "/b.sock: they may not search it (g+x)"),
            "Open the way (chmod g+x " + closed + ")"},
           {below,
            absl::StrCat("capbrokerd: warning: directory ", above,
                         " (owner uid 0, group 0, mode 0750) keeps the members of group 65534, "
                         "the socket's, from the socket ", below,
                         "/b.sock: they may not search it (o+x, its group being another)"),
            absl::StrCat("Open the way (chgrp 65534 ", above, " && chmod g+x ", above, ")")}}) {
    SCOPED_TRACE(c.socket_dir);
    testing::BrokerOptions options;
    options.capture_stderr = true;
    options.socket_path = c.socket_dir + "/b.sock";
    options.extra_args = {"--socket-mode", "0660"};
    ASSERT_OK_AND_ASSIGN(auto broker, testing::BrokerProcess::StartWith(kUidPolicy, options));
    std::string err = broker->Stderr();
    if (c.warning.empty()) {
      EXPECT_THAT(err, Not(HasSubstr("warning")));
    } else {
      EXPECT_THAT(err, HasSubstr(c.warning));
      EXPECT_THAT(err, HasSubstr("--socket-mode 0660 lets the socket's group (gid 65534) "
                                 "connect, but its members' clients will fail to connect with "
                                 "'Permission denied'"));
      EXPECT_THAT(err, HasSubstr(c.fix));
    }
    ASSERT_OK_AND_ASSIGN(int status, broker->Stop());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

// A root login session (pam_systemd) sets XDG_RUNTIME_DIR=/run/user/0. A
// root broker started there without --socket listens in root's runtime
// directory, where no other user's client looks: it says so, and how to
// serve them, instead of a permission hint that would not help.
TEST(DaemonStartTest, WarnsWhenARootBrokersSocketIsInRootsRuntimeDirectory) {
  if (geteuid() != 0) GTEST_SKIP() << "the warning is for a broker run as root";
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::string runtime = dir.Join("runtime");
  ASSERT_EQ(mkdir(runtime.c_str(), 0700), 0);
  struct Environment {
    Environment(const std::string& runtime) {
      for (const char* name : {"XDG_RUNTIME_DIR", "CAPBROKER_SOCKET"}) {
        if (const char* value = getenv(name)) saved.emplace_back(name, value);
      }
      setenv("XDG_RUNTIME_DIR", runtime.c_str(), 1);
      unsetenv("CAPBROKER_SOCKET");
    }
    ~Environment() {
      unsetenv("XDG_RUNTIME_DIR");
      for (const auto& [name, value] : saved) setenv(name.c_str(), value.c_str(), 1);
    }
    std::vector<std::pair<std::string, std::string>> saved;
  } environment(runtime);
  Result r = RunDaemon({"--policy", policy});
  EXPECT_TRUE(r.served) << r.err;
  EXPECT_THAT(r.err, HasSubstr("capbrokerd: warning: the socket " + runtime +
                               "/capbroker/broker.sock comes from XDG_RUNTIME_DIR"));
  EXPECT_THAT(r.err, HasSubstr("--socket /run/capbroker/broker.sock"));
  EXPECT_THAT(r.err, Not(HasSubstr("chmod o+x")));
  // Told that the socket is root's alone, it has nothing to say.
  Result private_socket = RunDaemon({"--policy", policy, "--socket-mode", "0600"});
  EXPECT_TRUE(private_socket.served) << private_socket.err;
  EXPECT_THAT(private_socket.err, Not(HasSubstr("warning")));
}

// An environment value is shown escaped: XDG_RUNTIME_DIR with a newline
// forged a line of the broker's log in the note on a runtime directory not
// root's. The start fails at the audit log, after the note and before the
// broker binds /run/capbroker/broker.sock.
TEST(DaemonStartTest, TheRuntimeDirectoryNoteShowsTheValueEscaped) {
  if (geteuid() != 0) GTEST_SKIP() << "the note is for a broker run as root";
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  const std::string forged = "/nonexistent-cb\ncapbrokerd: forged";
  Spawned broker =
      Spawn({"--policy", policy, "--audit-log", dir.Join("missing/audit.log")}, [&] {
        unsetenv("CAPBROKER_SOCKET");
        return setenv("XDG_RUNTIME_DIR", forged.c_str(), 1) == 0;
      });
  ASSERT_GT(broker.pid, 0);
  EXPECT_EQ(ReadToEnd(broker.ready), "");
  EXPECT_EQ(WaitExitCode(broker.pid), 1);
  const std::string err = ReadToEnd(broker.err);
  EXPECT_THAT(err, HasSubstr("capbrokerd: note: XDG_RUNTIME_DIR /nonexistent-cb\\x0acapbrokerd: "
                             "forged cannot be used"));
  EXPECT_THAT(err, Not(HasSubstr("\ncapbrokerd: forged")));
}

TEST(DaemonStartTest, UsageErrorsExitTwo) {
  Result r = RunDaemon({"--socket"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("usage:"));
  Result none = RunDaemon({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("--policy FILE is required"));
}

// systemd (Type=notify) times out a unit that never says READY=1 and
// kills it. The broker said "serving", and served, before a READY=1 it then
// failed to send; now a failed send stops it as a failed --ready-fd write
// does, before anything says it serves (its ready pipe closes unwritten).
TEST(DaemonStartTest, AReadyItCannotSendToSystemdStopsIt) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  const std::string notify = dir.Join("nobody-listens");
  Spawned broker = Spawn({"--policy", policy, "--socket", dir.Join("s")},
                         [&] { return setenv("NOTIFY_SOCKET", notify.c_str(), 1) == 0; });
  ASSERT_GT(broker.pid, 0);
  const bool served = ReadToEnd(broker.ready) == "READY\n";
  if (served) kill(broker.pid, SIGTERM);
  EXPECT_FALSE(served);
  EXPECT_EQ(WaitExitCode(broker.pid), 1);
  const std::string err = ReadToEnd(broker.err);
  EXPECT_THAT(err, HasSubstr("capbrokerd: not serving: sendto(NOTIFY_SOCKET=" + notify + ")"));
  EXPECT_THAT(err, Not(HasSubstr("capbrokerd: serving")));
}

// --ready-fd names a number the broker must write to once and close.
// - One it was not given is free at start; later one of the broker's own
//   fds (a socket, its lock file) took it, and the broker wrote READY into
//   that and closed it.
// - 0, 1 or 2: with 2, the loop's reserve fd later took the number of the
//   closed stderr, and every audit line failed, withholding every grant.
// It refuses to start instead (2: a usage error).
TEST(DaemonStartTest, RefusesAReadyFdItCannotUse) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  struct Case {
    const char* fd;
    int exit_code;
    std::string err;
  };
  const std::string kStandard = "fds 0, 1 and 2 are stdin, stdout and stderr";
  for (const Case& c : {Case{"3", 1, "--ready-fd 3: fd 3 is not open"},
                        Case{"5", 1, "--ready-fd 5: fd 5 is not open"},
                        Case{"9", 1, "--ready-fd 9: fd 9 is not open"},
                        Case{"0", 2, kStandard}, Case{"1", 2, kStandard},
                        Case{"2", 2, kStandard}}) {
    Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--ready-fd", c.fd});
    EXPECT_FALSE(r.served) << c.fd;
    EXPECT_EQ(r.exit_code, c.exit_code) << c.fd;
    EXPECT_THAT(r.err, HasSubstr(c.err)) << c.fd;
    EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
  }
}

// Under systemd socket activation fds 3 and up are the sockets systemd
// passed (LISTEN_FDS, LISTEN_PID). --ready-fd 3 there named the listening
// socket: the broker took it for its ready pipe (open read-write), its
// READY write failed (ENOTCONN), and the close that follows closed the
// listener, which its owner then closed again. It is refused at start,
// saying what to use instead.
TEST(DaemonStartTest, RefusesAReadyFdThatIsTheSocketFromSystemd) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  UniqueFd listening(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listening.valid()) << std::strerror(errno);
  ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(dir.Join("s")));
  ASSERT_EQ(bind(listening.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                 address.length),
            0)
      << std::strerror(errno);
  ASSERT_EQ(listen(listening.get(), 8), 0) << std::strerror(errno);
  // Above 3, which Spawn's ready pipe takes in the child first.
  listening.reset(fcntl(listening.get(), F_DUPFD_CLOEXEC, 10));
  ASSERT_TRUE(listening.valid()) << std::strerror(errno);
  // As systemd passes it: at fd 3 (over the ready pipe Spawn put there),
  // with LISTEN_PID the broker's pid; Spawn adds --ready-fd 3.
  Spawned broker = Spawn({"--policy", policy}, [&] {
    return dup2(listening.get(), 3) == 3 &&
           setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1) == 0 &&
           setenv("LISTEN_FDS", "1", 1) == 0;
  });
  ASSERT_GT(broker.pid, 0);
  close(broker.ready);  // its write end was replaced by the socket
  // The line, or end of file when it exits; a guard, should it serve.
  std::string err = ReadUntilLineWith(broker.err, "--ready-fd", 30);
  kill(broker.pid, SIGTERM);  // if it serves after all
  EXPECT_EQ(WaitExitCode(broker.pid), 1);
  close(broker.err);
  EXPECT_THAT(err, HasSubstr("--ready-fd 3 is the socket from systemd (LISTEN_FDS); use "
                             "Type=notify, or another fd"));
  EXPECT_THAT(err, Not(HasSubstr("serving")));
  EXPECT_THAT(err, Not(HasSubstr("Bad file descriptor")));
}

// Runs capbrokerd as systemd starts a socket-activated unit: `listening`
// (borrowed: a listening socket of the test's) at fd 3, LISTEN_PID and
// LISTEN_FDS set, and --ready-fd 4 added. A broker that serves writes READY
// there and is then stopped with SIGTERM (`served`). `listen_fds` is
// LISTEN_FDS, as a unit with that many sockets sets it.
Result RunActivated(std::vector<std::string> args, int listening,
                    const char* listen_fds = "1") {
  args.insert(args.begin(), testing::RunfilePath("broker/capbrokerd"));
  args.insert(args.end(), {"--ready-fd", "4"});
  std::vector<char*> argv = Pointers(args);
  std::vector<std::string> env = testing::BrokerEnvironment();
  std::vector<char*> envp = Pointers(env);
  int ready[2], err[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return {};
  }
  pid_t pid = fork();
  if (pid == 0) {
    environ = envp.data();  // LISTEN_PID and LISTEN_FDS are added below
    // Out of the way of 3 and 4 first, which any of these may hold.
    int high_sock = fcntl(listening, F_DUPFD_CLOEXEC, 30);
    int high_ready = fcntl(ready[1], F_DUPFD_CLOEXEC, 30);
    if (dup2(err[1], 2) != 2 || high_sock < 0 || high_ready < 0 ||
        dup2(high_sock, 3) != 3 || dup2(high_ready, 4) != 4 ||
        setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1) != 0 ||
        setenv("LISTEN_FDS", listen_fds, 1) != 0) {
      _exit(126);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(ready[1]);
  close(err[1]);
  Result result;
  // READY when it serves; end of file when it exits first.
  result.served = ReadToEnd(ready[0]) == "READY\n";
  if (result.served) kill(pid, SIGTERM);
  result.exit_code = WaitExitCode(pid);
  result.err = ReadToEnd(err[0]);
  return result;
}

// A listening SEQPACKET socket bound at `path`, as a .socket unit makes
// it; an invalid fd (and a failure added) if it cannot be made.
UniqueFd ListeningAt(const std::string& path) {
  UniqueFd listening(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(listening.valid()) << std::strerror(errno);
  absl::StatusOr<wire::UnixAddress> address = wire::MakeUnixAddress(path);
  EXPECT_OK(address.status());
  if (!listening.valid() || !address.ok()) return UniqueFd();
  if (bind(listening.get(), reinterpret_cast<const sockaddr*>(&address->addr),
           address->length) != 0 ||
      listen(listening.get(), 8) != 0) {
    ADD_FAILURE() << "bind or listen at " << path << ": " << std::strerror(errno);
    return UniqueFd();
  }
  return listening;
}

// A socket as a .socket unit makes it (ListeningAt) in a directory of its
// own, open all the way, as systemd's DirectoryMode=0755 makes it: the
// test's own directory may lie under one others may not search.
struct UnitSocket {
  TempDir dir{TempDir::OpenToOthers{}};
  std::string path = dir.path() + "/unit.sock";
  UniqueFd listening = ListeningAt(path);
};

// A socket from systemd has its unit's path and mode. A root broker took
// one 0666 with --socket-mode 0600 and --socket elsewhere, said "serving the
// socket from systemd", and every user could connect. --socket is a usage
// error there; --socket-mode is checked against the socket, which is
// refused when it lets in more; the serving line names the path.
TEST(DaemonStartTest, ASocketFromSystemdIsTheUnitsAndIsCheckedAgainstSocketMode) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  UnitSocket unit;
  TempDir& unit_dir = unit.dir;
  const std::string& path = unit.path;
  const UniqueFd& listening = unit.listening;
  ASSERT_TRUE(listening.valid());

  ASSERT_EQ(chmod(path.c_str(), 0666), 0);  // systemd's default SocketMode=
  Result wider = RunActivated({"--policy", policy, "--socket-mode", "0600"}, listening.get());
  EXPECT_FALSE(wider.served) << wider.err;
  EXPECT_EQ(wider.exit_code, 1) << wider.err;
  EXPECT_THAT(wider.err, HasSubstr("the socket from systemd at " + path));
  EXPECT_THAT(wider.err, HasSubstr("mode 0666) lets in more than --socket-mode 0600 says"));
  EXPECT_THAT(wider.err, HasSubstr("set SocketMode=0600 there"));
  EXPECT_THAT(wider.err, Not(HasSubstr("serving")));

  // The same socket in a directory of mode 0700 lets in its owner alone:
  // what --socket-mode 0600 says. The directory counts, as it does without
  // the flag.
  ASSERT_EQ(chmod(unit_dir.path().c_str(), 0700), 0);
  Result kept_out = RunActivated({"--policy", policy, "--socket-mode", "0600"}, listening.get());
  EXPECT_TRUE(kept_out.served) << kept_out.err;
  EXPECT_EQ(kept_out.exit_code, 0) << kept_out.err;
  ASSERT_EQ(chmod(unit_dir.path().c_str(), 0755), 0);

  Result elsewhere = RunActivated(
      {"--policy", policy, "--socket-mode", "0666", "--socket", dir.Join("wanted.sock")},
      listening.get());
  EXPECT_FALSE(elsewhere.served) << elsewhere.err;
  EXPECT_EQ(elsewhere.exit_code, 2) << elsewhere.err;
  EXPECT_THAT(elsewhere.err, HasSubstr("--socket " + dir.Join("wanted.sock") +
                                       ": systemd passed the socket (LISTEN_FDS)"));
  EXPECT_THAT(elsewhere.err, HasSubstr("ListenSequentialPacket="));
  EXPECT_THAT(elsewhere.err, HasSubstr("usage:"));

  // Two sockets from the unit: that is what is wrong, said first, not the
  // --socket that would be refused with one.
  Result two = RunActivated({"--policy", policy, "--socket", dir.Join("wanted.sock")},
                            listening.get(), "2");
  EXPECT_FALSE(two.served) << two.err;
  EXPECT_EQ(two.exit_code, 1) << two.err;
  EXPECT_THAT(two.err, HasSubstr("LISTEN_FDS=2: capbrokerd takes exactly one socket"));
  EXPECT_THAT(two.err, Not(HasSubstr("leave --socket out")));

  ASSERT_EQ(chmod(path.c_str(), 0600), 0);  // SocketMode=0600
  Result matching = RunActivated({"--policy", policy, "--socket-mode", "0600"}, listening.get());
  EXPECT_TRUE(matching.served) << matching.err;
  EXPECT_EQ(matching.exit_code, 0) << matching.err;
  EXPECT_THAT(matching.err, HasSubstr("capbrokerd: serving the socket from systemd at " + path +
                                      " with policy"));
}

// A socket from systemd in a directory others may write (not its own, as
// ListenSequentialPacket= in /tmp makes it): they could move it away and
// bind their own at its path, where clients connect. The daemon refuses it
// at start with the unit's advice, as CheckSocketDirectoryFromSystemd says;
// in a directory of its own (0755) the same socket serves.
TEST(DaemonStartTest, RefusesASocketFromSystemdInADirectoryOthersCanWrite) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  UnitSocket unit;
  TempDir& unit_dir = unit.dir;
  const std::string& path = unit.path;
  const UniqueFd& listening = unit.listening;
  ASSERT_TRUE(listening.valid());
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  for (mode_t mode : {0777, 01777}) {
    ASSERT_EQ(chmod(unit_dir.path().c_str(), mode), 0);
    Result open_dir = RunActivated({"--policy", policy}, listening.get());
    EXPECT_FALSE(open_dir.served) << std::oct << mode << ": " << open_dir.err;
    EXPECT_EQ(open_dir.exit_code, 1) << open_dir.err;
    EXPECT_THAT(open_dir.err, HasSubstr("the socket from systemd at " + path));
    EXPECT_THAT(open_dir.err, HasSubstr("is writable by other users"));
    EXPECT_THAT(open_dir.err, HasSubstr("set ListenSequentialPacket= in the .socket unit to a "
                                        "path in a directory of its own"));
    EXPECT_THAT(open_dir.err, Not(HasSubstr("serving")));
  }
  ASSERT_EQ(chmod(unit_dir.path().c_str(), 0755), 0);
  Result own_dir = RunActivated({"--policy", policy}, listening.get());
  EXPECT_TRUE(own_dir.served) << own_dir.err;
  EXPECT_EQ(own_dir.exit_code, 0) << own_dir.err;
}

// A broker run by a user serves that user alone (Bind makes its socket 0600
// in a 0700 directory). A socket from systemd has the unit's permissions,
// by default 0666 in a 0755 directory: every local user could connect and
// get what the policy grants the broker's user. Refused at start, saying
// how to fix the unit, unless --socket-mode with o+w says every user is
// meant to connect.
TEST(DaemonStartTest, ABrokerRunByAUserRefusesASocketFromSystemdOthersCanReach) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to start the broker as another user";
  constexpr uid_t kUser = 65534;
  // Open all the way: a directory in /tmp (1777), mode 0755, root's, as
  // systemd's DirectoryMode= makes it; the policy in it readable by the user.
  TempDir open_tmp{TempDir::OpenToOthers{}};
  const std::string open_dir = open_tmp.path();
  const std::string policy = open_dir + "/policy.capnp";
  const std::string socket_path = open_dir + "/s";
  {
    UniqueFd file(open(policy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(file.valid()) << std::strerror(errno);
    ASSERT_EQ(write(file.get(), kGoodPolicy, sizeof(kGoodPolicy) - 1),
              static_cast<ssize_t>(sizeof(kGoodPolicy) - 1));
  }
  // Run by fd: the user may not search the path to the test's runfiles.
  UniqueFd binary(open(testing::RunfilePath("broker/capbrokerd").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(binary.valid()) << std::strerror(errno);
  struct Case {
    const char* what;
    mode_t socket_mode;
    std::vector<std::string> extra_args;
    bool refused;
  };
  for (const Case& c : std::vector<Case>{
           {"systemd's default SocketMode=0666", 0666, {}, true},
           {"SocketMode=0600", 0600, {}, false},
           {"0666, meant for everyone", 0666, {"--socket-mode", "0666"}, false}}) {
    SCOPED_TRACE(c.what);
    std::vector<std::string> args = {"capbrokerd", "--policy", policy, "--ready-fd", "4"};
    args.insert(args.end(), c.extra_args.begin(), c.extra_args.end());
    std::vector<char*> argv = Pointers(args);
    std::vector<std::string> env = testing::BrokerEnvironment();
    std::vector<char*> envp = Pointers(env);
    ASSERT_OK_AND_ASSIGN(wire::UnixAddress address, wire::MakeUnixAddress(socket_path));
    int ready[2], err[2];
    ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid == 0) {
      environ = envp.data();  // LISTEN_PID and LISTEN_FDS are added below
      // As systemd starts a unit with User=: its socket at fd 3, made and
      // chmod-ed by root, LISTEN_PID and LISTEN_FDS set; the ready pipe at 4.
      int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
      if (sock < 0 ||
          bind(sock, reinterpret_cast<const sockaddr*>(&address.addr), address.length) != 0 ||
          listen(sock, 8) != 0 || chmod(socket_path.c_str(), c.socket_mode) != 0) {
        _exit(125);
      }
      // Out of the way of 3 and 4 first, which any of these may hold.
      int high_sock = fcntl(sock, F_DUPFD_CLOEXEC, 30);
      int high_ready = fcntl(ready[1], F_DUPFD_CLOEXEC, 30);
      int high_binary = fcntl(binary.get(), F_DUPFD_CLOEXEC, 30);
      if (dup2(err[1], 2) != 2 || high_sock < 0 || high_ready < 0 || high_binary < 0 ||
          dup2(high_sock, 3) != 3 || dup2(high_ready, 4) != 4 ||
          setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1) != 0 ||
          setenv("LISTEN_FDS", "1", 1) != 0 || setresgid(kUser, kUser, kUser) != 0 ||
          setresuid(kUser, kUser, kUser) != 0) {
        _exit(126);
      }
      syscall(SYS_execveat, high_binary, "", argv.data(), environ, AT_EMPTY_PATH);
      _exit(127);
    }
    ASSERT_GT(pid, 0);
    close(ready[1]);
    close(err[1]);
    // READY when it serves; end of file when it exits first.
    const bool served = ReadToEnd(ready[0]) == "READY\n";
    if (served) kill(pid, SIGTERM);
    const int code = WaitExitCode(pid);
    const std::string message = ReadToEnd(err[0]);
    unlink(socket_path.c_str());
    if (c.refused) {
      EXPECT_FALSE(served) << message;
      EXPECT_EQ(code, 1) << message;
      EXPECT_THAT(message, HasSubstr("other users can connect to the socket from systemd at " +
                                     socket_path + " (mode 0666"));
      EXPECT_THAT(message, HasSubstr("SocketMode=0600"));
    } else {
      EXPECT_TRUE(served) << message;
      EXPECT_EQ(code, 0) << message;
    }
  }
}

TEST(DaemonStartTest, RefusesASymlinkedAuditLog) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  dir.WriteFile("elsewhere", "");
  ASSERT_EQ(symlink(dir.Join("elsewhere").c_str(), dir.Join("audit").c_str()), 0);
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s"),
                        "--audit-log", dir.Join("audit")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("symlink"));
}

// As reported: another user creates the log, in a directory others can
// write to, before the broker starts. Were it to append there, the audit
// trail would be theirs to read and truncate.
TEST(DaemonStartTest, RefusesAnAuditLogAnotherUserOwns) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::string logs = dir.Join("logs");
  ASSERT_EQ(mkdir(logs.c_str(), 0700), 0);
  ASSERT_EQ(chmod(logs.c_str(), 01777), 0);  // sticky: the walk lets it pass
  std::string log = logs + "/audit.log";
  UniqueFd planted(open(log.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ASSERT_TRUE(planted.valid()) << std::strerror(errno);
  if (fchown(planted.get(), testing::kForeignUid, testing::kForeignUid) != 0) {
    GTEST_SKIP() << "cannot give the file away here: " << errno;
  }
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--audit-log", log});
  EXPECT_FALSE(r.served);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("audit log " + log + " is owned by uid 65534"));
  EXPECT_THAT(r.err, HasSubstr("chown root " + log));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

// The audit log records every user's uid, pid, executable and requests: a
// log other users may read is refused at start, with the fix.
TEST(DaemonStartTest, RefusesAnAuditLogOthersCanRead) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::string log = dir.WriteFile("audit.log", "", 0600);
  ASSERT_EQ(chmod(log.c_str(), 0644), 0);
  Result r = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--audit-log", log});
  EXPECT_FALSE(r.served);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("audit log " + log + " is readable by other users (mode 0644)"));
  EXPECT_THAT(r.err, HasSubstr("chmod o-r " + log));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

// As reported: --audit-log naming the policy file started, and appended
// audit lines to the policy; the next SIGHUP was refused with a syntax
// error that did not name the cause, the next restart failed. The same for
// the socket's lock file. Refused at start, naming the file.
TEST(DaemonStartTest, RefusesAnAuditLogThatIsThePolicyOrTheLockFile) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  Result same = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--audit-log", policy});
  EXPECT_FALSE(same.served);
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_THAT(same.err, HasSubstr("audit log " + policy + " is the policy file"));
  EXPECT_EQ(testing::ReadWholeFile(policy), kGoodPolicy);
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";

  std::string lock = dir.Join("s.lock");
  Result locked = RunDaemon({"--policy", policy, "--socket", dir.Join("s"), "--audit-log", lock});
  EXPECT_FALSE(locked.served);
  EXPECT_EQ(locked.exit_code, 1);
  EXPECT_THAT(locked.err, HasSubstr("audit log " + lock + " is the socket's lock file"));
  EXPECT_NE(access(dir.Join("s").c_str(), F_OK), 0) << "must not have listened";
}

// --audit-log naming the socket: the log, opened first, left a regular file
// at the socket's path, and the bind then refused it ("exists and is not a
// socket"), blaming a file the broker had just made, at this start and at
// every later one, the flags corrected or not. Refused before anything is
// created there.
TEST(DaemonStartTest, RefusesAnAuditLogThatIsTheSocketAndLeavesNothingThere) {
  TempDir dir;
  std::string policy = dir.WriteFile("policy.capnp", kGoodPolicy, 0600);
  std::string socket = dir.Join("s");
  Result same = RunDaemon({"--policy", policy, "--socket", socket, "--audit-log", socket});
  EXPECT_FALSE(same.served);
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_THAT(same.err, HasSubstr("audit log " + socket + " is the socket (" + socket + ")"));
  EXPECT_NE(access(socket.c_str(), F_OK), 0) << "left a file at the socket's path";
}

}  // namespace
}  // namespace capbroker
