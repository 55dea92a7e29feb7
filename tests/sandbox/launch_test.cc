// A launch as a caller sees it: what is in force, what is missing, errors,
// fds, environment, limits and the end of a service; and that a child stuck
// in its setup stalls nobody.
#include <elf.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "broker/sandbox/landlock.h"
#include "broker/sandbox/minimal_root.h"
#include "broker/sandbox/namespaces.h"
#include "broker/sandbox/protection.h"
#include "broker/sandbox/sandbox.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"
#include "tests/fixtures/fuse_file.h"
#include "tests/fixtures/host_etc_dir.h"
#include "tests/fixtures/temp_dir.h"
#include "tests/sandbox/host_files.h"
#include "tests/sandbox/in_child.h"
#include "tests/sandbox/launched_run.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace capbroker::sandbox {
namespace {

using ::capbroker::testing::ChildResult;
using ::capbroker::testing::Finished;
using ::capbroker::testing::LaunchAndWait;
using ::capbroker::testing::FuseFile;
using ::capbroker::testing::HostEtcDir;
using ::capbroker::testing::ReadUntil;
using ::capbroker::testing::RunfileRealPath;
using ::capbroker::testing::RunInChild;
using ::capbroker::testing::RunToEnd;
using ::capbroker::testing::ReadWholeFile;
using ::capbroker::testing::TempDir;
using ::capbroker::testing::WritableCgroup2Mount;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

constexpr uid_t kNobody = 65534;

SandboxSpec ShellSpec(const std::string& script) {
  SandboxSpec spec;
  spec.name = "launch-test";
  spec.argv = {"/bin/sh", "-c", script};
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.uid = kNobody;
  spec.gid = kNobody;
  return spec;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

bool NoChildren() {
  return waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

// Runs `body` in a child that has become a broker without root: uid and gid
// `kNobody`, supplementary groups `groups` (none by default, as the README
// advises), dumpable again (so that it may write its children's id maps).
std::string AsNonRootBroker(const std::function<std::string()>& body,
                            const std::vector<gid_t>& groups = {}) {
  ChildResult result = RunInChild([&]() -> std::string {
    if (setgroups(groups.size(), groups.data()) != 0) {
      return absl::StrCat("setgroups: ", strerror(errno));
    }
    if (setresgid(kNobody, kNobody, kNobody) != 0 || setresuid(kNobody, kNobody, kNobody) != 0) {
      return absl::StrCat("setresuid: ", strerror(errno));
    }
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    return body();
  });
  return result.output;
}

// `entries`, then what Landlock leaves uncovered at the running kernel's ABI
// (landlock::UncoveredAt), which a launch lists last under missing: nothing
// at ABI 6 and above, so that the tests hold on older kernels too.
// `tcp_wanted`: Landlock is the only layer to deny TCP (the seccomp filter
// off, no inet family allowed); `host_tree`: the service sees the host's
// files (no minimal root).
std::vector<std::string> AndLandlockGaps(std::vector<std::string> entries,
                                         bool tcp_wanted = false, bool host_tree = false) {
  absl::StatusOr<int> abi = landlock::Abi();
  if (!abi.ok()) {
    ADD_FAILURE() << "no Landlock here: " << abi.status();
    return entries;
  }
  for (const std::string& gap : landlock::UncoveredAt(*abi, tcp_wanted, host_tree)) {
    entries.push_back(MissingEntry(Protection::kLandlock, gap));
  }
  return entries;
}

// Likewise, joined as Describe joins `missing`.
std::string MissingAndLandlockGaps(std::vector<std::string> entries, bool tcp_wanted = false) {
  return absl::StrJoin(AndLandlockGaps(std::move(entries), tcp_wanted), "; ");
}

std::string Describe(const absl::StatusOr<LaunchedProcess>& launched) {
  if (!launched.ok()) return launched.status().ToString();
  return absl::StrCat("in force: ", absl::StrJoin(launched->in_force, " "),
                      "; missing: ", absl::StrJoin(launched->missing, "; "));
}

TEST(LaunchTest, EveryProtectionIsInForceByDefault) {
  ASSERT_OK_AND_ASSIGN(int abi, landlock::Abi());
  SandboxSpec spec = ShellSpec("hostname; id -u; id -g; ulimit -n; ulimit -p");
  spec.limits.open_files = 64;
  spec.limits.processes = 32;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_EQ(absl::StrJoin(launched.in_force, " "),
            absl::StrCat("userns mountns pidns ipcns utsns netns nnp caps seccomp landlock:", abi));
  EXPECT_EQ(launched.missing, AndLandlockGaps({}));
  EXPECT_EQ(launched.cgroup, "");
  EXPECT_GT(launched.pid, 0);
  EXPECT_NE(fcntl(launched.pidfd.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(launched.output.get(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(fcntl(launched.output.get(), F_GETFL) & O_NONBLOCK, 0);
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_THAT(Lines(finished.output), ElementsAre("launch-test", "65534", "65534", "64", "32"));
  EXPECT_TRUE(WIFEXITED(finished.wait_status) && WEXITSTATUS(finished.wait_status) == 0);
}

// What a service with no openFiles gets: 1024 fds, soft and hard, as
// systemd gives services (a soft 1024), never the broker's own limits: the
// broker raises its soft limit to its hard one (tens of thousands or more),
// which a service, keeping fd numbers in select(2) sets or simply leaking,
// must not inherit. A broker whose hard limit is lower gives its own.
std::string OpenFilesOfAServiceWithoutLimits(rlim_t broker_hard) {
  ChildResult result = RunInChild([&]() -> std::string {
    rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return "getrlimit failed";
    if (broker_hard != 0) limit.rlim_max = broker_hard;
    limit.rlim_cur = limit.rlim_max;  // as capbrokerd does at start
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return absl::StrCat("setrlimit: ", strerror(errno));
    absl::StatusOr<LaunchedProcess> launched =
        LaunchAndWait(ShellSpec("ulimit -S -n; ulimit -H -n"));
    if (!launched.ok()) return launched.status().ToString();
    absl::StatusOr<Finished> finished = RunToEnd(*launched);
    return finished.ok() ? finished->output : finished.status().ToString();
  });
  return result.output;
}

TEST(LaunchTest, AServiceWithoutOpenFilesHas1024Fds) {
  rlimit own;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &own), 0);
  ASSERT_GT(own.rlim_max, 1024u) << "the broker's hard limit must be above the default";
  EXPECT_EQ(OpenFilesOfAServiceWithoutLimits(0), "1024\n1024\n");
  EXPECT_EQ(OpenFilesOfAServiceWithoutLimits(512), "512\n512\n");
}

// A service that sets no process limit still has one: RLIMIT_NPROC
// kDefaultProcesses, counted in its own user namespace, so that it cannot
// fork until the host runs out of pids. The count takes in the probe
// itself: it forks one fewer, then fork fails.
TEST(LaunchTest, AServiceWithoutProcessesCannotForkPastTheDefault) {
  ASSERT_EQ(kDefaultProcesses, 512u);
  SandboxSpec spec = ShellSpec("ulimit -S -p; ulimit -H -p");
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_EQ(launched.missing, AndLandlockGaps({}));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "512\n512\n");

  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"), "--count-forks"};
  ASSERT_OK_AND_ASSIGN(launched, LaunchAndWait(spec));
  ASSERT_OK_AND_ASSIGN(finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "forks: 511, then Resource temporarily unavailable\ndone\n");
}

// Without a user namespace RLIMIT_NPROC would count every process of the
// service's uid on the host: no default, said under missing.
TEST(LaunchTest, WithoutAUserNamespaceTheDefaultProcessLimitIsListedAsMissing) {
  SandboxSpec spec = ShellSpec("true");
  spec.protections.private_users = Requirement::kOff;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_EQ(launched.missing,
            AndLandlockGaps({"processes: no default limit (512) without privateUsers: "
                             "RLIMIT_NPROC would count every process of uid 65534 on the host; "
                             "set limits.processes or pidsMax"}));
  EXPECT_OK(RunToEnd(launched).status());
  spec.limits.processes = 64;
  ASSERT_OK_AND_ASSIGN(launched, LaunchAndWait(spec));
  EXPECT_EQ(launched.missing, AndLandlockGaps({}));
  EXPECT_OK(RunToEnd(launched).status());
}

TEST(LaunchTest, ProtectionsTurnedOffAreNotApplied) {
  SandboxSpec spec = ShellSpec("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; hostname");
  Protections& p = spec.protections;
  for (Requirement* r : {&p.private_users, &p.protect_system, &p.private_pids, &p.private_ipc,
                         &p.protect_hostname, &p.private_network, &p.no_new_privileges,
                         &p.drop_capabilities, &p.system_call_filter, &p.landlock}) {
    *r = Requirement::kOff;
  }
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, IsEmpty());
  // The families the spec still lists (unix, by default) went with the
  // filter, and the default process limit with the user namespace.
  EXPECT_THAT(launched.missing,
              ElementsAre("restrictAddressFamilies: enforced by systemCallFilter, which is off",
                          StartsWith("processes: no default limit (512) without privateUsers")));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_THAT(Lines(finished.output), ElementsAre("NoNewPrivs:\t0", "Seccomp:\t0", host));
}

TEST(LaunchTest, AddressFamiliesWithoutTheFilterAreListedAsMissing) {
  ASSERT_OK_AND_ASSIGN(int abi, landlock::Abi());
  SandboxSpec spec = ShellSpec("true");
  spec.protections.system_call_filter = Requirement::kOff;
  for (std::vector<AddressFamily> families :
       {std::vector<AddressFamily>{AddressFamily::kUnix},
        std::vector<AddressFamily>{AddressFamily::kUnix, AddressFamily::kInet}}) {
    spec.protections.restrict_address_families = families;
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
    EXPECT_EQ(Describe(launched),
              absl::StrCat("in force: userns mountns pidns ipcns utsns netns nnp caps landlock:",
                           abi,
                           "; missing: ",
                           MissingAndLandlockGaps({"restrictAddressFamilies: enforced by "
                                                   "systemCallFilter, which is off"},
                                                  /*tcp_wanted=*/std::find(
                                                      families.begin(), families.end(),
                                                      AddressFamily::kInet) == families.end())));
    if (launched.ok()) {
      EXPECT_OK(RunToEnd(*launched).status());
    }
  }
}

// The broker's session keyring stays the broker's: with systemCallFilter
// off (which denies keyctl), a service searching its session keyring (@s)
// must not find the keys the broker keeps there. The test's child joins a
// keyring of its own with a key in it, as a broker's session might hold.
TEST(LaunchTest, AServiceHasASessionKeyringOfItsOwn) {
  const std::string description = absl::StrCat("capbroker-launch-test-", getpid());
  ChildResult result = RunInChild([&]() -> std::string {
    std::string keyring = description + "-keyring";
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, keyring.c_str()) < 0) {
      return absl::StrCat("SKIP: no session keyring here: ", strerror(errno));
    }
    static constexpr char kSecret[] = "broker secret";
    if (syscall(SYS_add_key, "user", description.c_str(), kSecret, sizeof kSecret - 1,
                KEY_SPEC_SESSION_KEYRING) < 0) {
      return absl::StrCat("add_key: ", strerror(errno));
    }
    SandboxSpec spec = ShellSpec("");
    spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"),
                 absl::StrCat("--session-key=", description)};
    spec.protections.system_call_filter = Requirement::kOff;
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
    if (!launched.ok()) return launched.status().ToString();
    absl::StatusOr<Finished> finished = RunToEnd(*launched);
    return finished.ok() ? finished->output : finished.status().ToString();
  });
  if (absl::StartsWith(result.output, "SKIP: ")) GTEST_SKIP() << result.output;
  EXPECT_EQ(result.output, "session-key: not found (Required key not available)\n");
}

// Installs `code` as this process's seccomp filter, as one around the
// broker would be (in a child). Returns "" or what failed.
template <size_t N>
std::string InstallFilter(sock_filter (&code)[N]) {
  sock_fprog program{static_cast<unsigned short>(N), code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    return absl::StrCat("seccomp: ", strerror(errno));
  }
  return "";
}

// Where a filter around the broker refuses keyctl (Docker's default
// profile does, with EPERM), the service inherits that filter and can reach
// no keyring either: nothing to leave, and the launch goes on.
TEST(LaunchTest, AKeyctlRefusedAroundTheBrokerStopsNoLaunch) {
  ChildResult result = RunInChild([&]() -> std::string {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_keyctl, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    if (std::string failed = InstallFilter(code); !failed.empty()) return failed;
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(ShellSpec("echo started"));
    if (!launched.ok()) return launched.status().ToString();
    absl::StatusOr<Finished> finished = RunToEnd(*launched);
    return finished.ok() ? finished->output : finished.status().ToString();
  });
  EXPECT_EQ(result.output, "started\n");
}

// A filter that refuses only the join leaves the session keyring reachable:
// the service would inherit it with the broker's keys, so the launch fails,
// saying why, and leaves no child.
TEST(LaunchTest, AKeyringJoinRefusedWhileTheKeyringStaysReachableFailsTheLaunch) {
  ChildResult result = RunInChild([&]() -> std::string {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_keyctl, 0, 3),
        // The low 32 bits of the first argument (x86_64 is little-endian).
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, KEYCTL_JOIN_SESSION_KEYRING, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    if (std::string failed = InstallFilter(code); !failed.empty()) return failed;
    if (syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) < 0) {
      return absl::StrCat("SKIP: no session keyring here: ", strerror(errno));
    }
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(ShellSpec("echo started"));
    std::string outcome = launched.status().ToString();
    if (launched.ok()) {
      absl::StatusOr<Finished> finished = RunToEnd(*launched);
      outcome = finished.ok() ? finished->output : finished.status().ToString();
    }
    return NoChildren() ? outcome : absl::StrCat(outcome, "; a child is left");
  });
  if (absl::StartsWith(result.output, "SKIP: ")) GTEST_SKIP() << result.output;
  EXPECT_THAT(result.output,
              AllOf(HasSubstr("PERMISSION_DENIED"), HasSubstr("KEYCTL_JOIN_SESSION_KEYRING"),
                    HasSubstr("would share the broker's session keyring"),
                    Not(HasSubstr("a child is left"))));
}

TEST(LaunchTest, FiltersNeedNoNewPrivileges) {
  SandboxSpec spec = ShellSpec("true");
  spec.protections.no_new_privileges = Requirement::kOff;
  EXPECT_THAT(LaunchAndWait(spec), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("need noNewPrivileges")));
  EXPECT_TRUE(NoChildren());
}

TEST(LaunchTest, MalformedSpecsAreRefused) {
  SandboxSpec relative = ShellSpec("true");
  relative.argv[0] = "bin/sh";
  EXPECT_THAT(LaunchAndWait(relative), StatusIs(absl::StatusCode::kInvalidArgument));
  SandboxSpec dotdot = ShellSpec("true");
  dotdot.argv[0] = "/usr/../bin/sh";
  EXPECT_THAT(LaunchAndWait(dotdot), StatusIs(absl::StatusCode::kInvalidArgument));
  SandboxSpec reserved = ShellSpec("true");
  reserved.env.push_back("LISTEN_PID=7");
  EXPECT_THAT(LaunchAndWait(reserved), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("LISTEN_PID is set by the sandbox")));
  SandboxSpec bad_name = ShellSpec("true");
  bad_name.fds = {{"a:b", 0, false, false}};
  EXPECT_THAT(LaunchAndWait(bad_name), StatusIs(absl::StatusCode::kInvalidArgument));
  SandboxSpec closed = ShellSpec("true");
  closed.fds = {{"gone", 1000, false, false}};
  EXPECT_THAT(LaunchAndWait(closed), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not open")));
  SandboxSpec hostname = ShellSpec("true");
  hostname.name = "a/b";
  EXPECT_THAT(LaunchAndWait(hostname), StatusIs(absl::StatusCode::kInvalidArgument));
  // A malformed hidden path is the spec's error, whatever protectSystem
  // requires: not a minimal root that fails in the child (best effort, the
  // service would run in the host's tree with nothing hidden).
  for (Requirement requirement : {Requirement::kRequired, Requirement::kBestEffort}) {
    for (const char* path : {"etc/capbroker", "/etc/../etc/capbroker", "/etc//capbroker"}) {
      SandboxSpec hidden = ShellSpec("true");
      hidden.protections.protect_system = requirement;
      hidden.hidden_paths = {"/etc/fine", path};
      EXPECT_THAT(LaunchAndWait(hidden),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           absl::StrCat("hidden path '", path,
                                        "' must be absolute, without '.' or '..'")));
    }
  }
  EXPECT_TRUE(NoChildren());
}

// A directory of the test's own in the host's /etc, which the minimal root
// binds whole; removed with its contents (and, if the test is killed
// first, by the next one).
class EtcDir : public HostEtcDir {
 public:
  EtcDir() : HostEtcDir("capbroker-launch-test") {}
};

// Why a test that writes in /etc skips.
constexpr char kWritesInEtc[] = "writes in /etc, which takes root";

TEST(LaunchTest, HiddenPathsShowNoContent) {
  if (!HostEtcDir::Allowed()) GTEST_SKIP() << kWritesInEtc;
  EtcDir etc;
  for (const char* dir : {"conf.d", "other.d"}) {
    ASSERT_EQ(mkdir(etc.Join(dir).c_str(), 0755), 0) << strerror(errno);
  }
  for (const char* file : {"policy.capnp", "conf.d/a", "other.d/b", "visible"}) {
    std::ofstream(etc.Join(file)) << "content of " << file;
  }
  // Resolved as in the service's root: the absolute link leads to other.d.
  ASSERT_EQ(symlink(etc.Join("other.d").c_str(), etc.Join("alias").c_str()), 0);
  SandboxSpec spec = ShellSpec(absl::StrCat(
      "cd ", etc.path(), " && for f in policy.capnp visible; do echo \"$f=[$(cat $f)]\"; done; "
      "for d in conf.d other.d; do echo \"$d=[$(ls -A $d)]\"; done; "
      "(echo x > policy.capnp) 2>/dev/null && echo written || echo not written"));
  // Those the root does not hold are left alone.
  spec.hidden_paths = {etc.Join("policy.capnp"), etc.Join("conf.d"), etc.Join("alias"),
                       "/var/lib/capbroker-not-in-the-root", etc.Join("missing/x")};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_THAT(Lines(finished.output),
              ElementsAre("policy.capnp=[]", "visible=[content of visible]", "conf.d=[]",
                          "other.d=[]", "not written"));
  EXPECT_EQ(ReadWholeFile(etc.Join("policy.capnp")), "content of policy.capnp");
}

// A symlink that leads to itself, in a directory of the test's own in /etc:
// hidden, it cannot be resolved (ELOOP), which fails the minimal root after
// everything else is mounted in it.
class SymlinkLoopInEtc {
 public:
  SymlinkLoopInEtc() : path_(etc_.Join("loop")) {
    EXPECT_EQ(symlink(path_.c_str(), path_.c_str()), 0) << path_ << ": " << strerror(errno);
  }
  const std::string& path() const { return path_; }
  // How the launch names the failure.
  std::string Error() const {
    return absl::StrCat("protectSystem: the minimal root could not be built: openat2(", path_,
                        ", RESOLVE_IN_ROOT): Too many levels of symbolic links");
  }

 private:
  EtcDir etc_;
  std::string path_;
};

// A policy kept in a directory of /etc only root may search: the child
// looks for it with the service's ids, is refused as the service would be,
// and has nothing to hide.
TEST(LaunchTest, AHiddenPathTheServiceCannotReachIsNoError) {
  if (!HostEtcDir::Allowed()) GTEST_SKIP() << kWritesInEtc;
  EtcDir etc;
  ASSERT_EQ(mkdir(etc.Join("priv").c_str(), 0700), 0) << strerror(errno);
  std::ofstream(etc.Join("priv/policy.capnp")) << "the policy";
  std::ofstream(etc.Join("visible")) << "visible";
  SandboxSpec spec = ShellSpec(absl::StrCat(
      "cat ", etc.Join("visible"), "; echo; cat ", etc.Join("priv/policy.capnp"),
      " 2>/dev/null || echo unreadable"));
  spec.hidden_paths = {etc.Join("priv/policy.capnp"), etc.Join("visible")};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, Contains("mountns"));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "\nunreadable\n");
}

// A listening pathname socket in a directory the root holds, hidden as the
// broker hides its own: the service finds an empty read-only file there and
// cannot connect (EACCES: connect(2) asks for write permission; a caller
// who had it would get ECONNREFUSED, from a file that is no socket).
// Landlock cannot stop a connect to a pathname socket, and the seccomp
// filter allows unix sockets: the mount over it is what refuses. Its twin
// beside it, not hidden, is reachable, which shows that.
TEST(LaunchTest, AHiddenSocketCannotBeConnectedTo) {
  if (!HostEtcDir::Allowed()) GTEST_SKIP() << kWritesInEtc;
  EtcDir etc;
  auto listen_at = [](const std::string& path) {
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    EXPECT_LT(path.size(), sizeof address.sun_path);
    memcpy(address.sun_path, path.c_str(), path.size());
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0)
        << path << ": " << strerror(errno);
    EXPECT_EQ(chmod(path.c_str(), 0666), 0) << strerror(errno);
    EXPECT_EQ(listen(fd.get(), 4), 0) << strerror(errno);
    return fd;
  };
  UniqueFd hidden = listen_at(etc.Join("broker.sock"));
  UniqueFd visible = listen_at(etc.Join("other.sock"));
  SandboxSpec spec = ShellSpec("");
  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"),
               absl::StrCat("--connect-only=", etc.Join("broker.sock")),
               absl::StrCat("--connect-only=", etc.Join("other.sock"))};
  spec.hidden_paths = {etc.Join("broker.sock")};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, Contains("mountns"));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_THAT(Lines(finished.output),
              ElementsAre(absl::StrCat("unix-connect ", etc.Join("broker.sock"),
                                       ": blocked (Permission denied)"),
                          absl::StrCat("unix-connect ", etc.Join("other.sock"),
                                       ": ESCAPED (connected)"),
                          "done"));
  // The host's socket is untouched.
  struct stat st;
  ASSERT_EQ(lstat(etc.Join("broker.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

// A best-effort minimal root that cannot be built leaves the host's tree
// whole: its half-built staging tmpfs, mounted over /tmp, is detached
// again. A hidden symlink loop fails the build after everything else is
// mounted there.
TEST(LaunchTest, ABestEffortRootThatFailsLeavesTheHostsTmpAlone) {
  if (!HostEtcDir::Allowed()) GTEST_SKIP() << kWritesInEtc;
  SymlinkLoopInEtc loop;
  const std::string marker = absl::StrCat("/tmp/capbroker-launch-test-", getpid());
  std::ofstream(marker) << "host";
  absl::Cleanup remove_marker = [&] { unlink(marker.c_str()); };
  SandboxSpec spec = ShellSpec(absl::StrCat(
      "test -e ", marker, " && echo host /tmp; test -e /tmp/usr && echo staging /tmp; true"));
  spec.protections.protect_system = Requirement::kBestEffort;
  spec.hidden_paths = {loop.path()};
  absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
  ASSERT_OK(launched.status());
  EXPECT_THAT(launched->missing, Contains(loop.Error()));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(*launched));
  EXPECT_EQ(finished.output, "host /tmp\n");
}

// Once pivot_root has made the minimal root the child's, there is no host
// tree left to go on in: a step that fails after it (here the old root's
// detach, refused by a filter around the broker) fails the launch even for
// a best-effort protectSystem, naming the step, and leaves no child.
TEST(LaunchTest, ARootThatFailsAfterPivotRootFailsTheLaunchWhateverTheRequirement) {
  for (Requirement requirement : {Requirement::kBestEffort, Requirement::kRequired}) {
    ChildResult result = RunInChild([&]() -> std::string {
      sock_filter code[] = {
          BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
          BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_umount2, 0, 1),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
          BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      };
      if (std::string failed = InstallFilter(code); !failed.empty()) return failed;
      SandboxSpec spec = ShellSpec("echo started");
      spec.protections.protect_system = requirement;
      absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
      std::string outcome = Describe(launched);
      if (launched.ok()) {
        absl::StatusOr<Finished> finished = RunToEnd(*launched);
        absl::StrAppend(&outcome, "; output: ",
                        finished.ok() ? finished->output : finished.status().ToString());
      }
      return NoChildren() ? outcome : absl::StrCat(outcome, "; a child is left");
    });
    EXPECT_EQ(result.output,
              "FAILED_PRECONDITION: protectSystem: the minimal root could not be built, and "
              "without it the service has no root to run in: after pivot_root into the minimal "
              "root: umount2(old root, MNT_DETACH): Operation not permitted")
        << (requirement == Requirement::kRequired ? "required" : "best effort");
  }
}

// What a service sees of /proc, by shell builtins only (no process of its
// own but pid 1's shell): the pids listed there, whether the host's pid 1
// (or its own, in a pid namespace) shows its command line, and whether its
// own entries are readable.
constexpr char kProcView[] =
    "echo pids: /proc/[0-9]*; "
    "if read -r line < /proc/1/status; then echo pid 1 readable; else echo pid 1 refused; fi "
    "2>/dev/null; "
    "if read -r line < /proc/self/status; then echo self readable; else echo self refused; "
    "fi 2>/dev/null";

// A service that has its own mount and pid namespaces but no minimal root
// (a best-effort root that could not be built: a hidden symlink loop fails
// it) gets a /proc of its own pid namespace mounted over the host's: as
// reported, it saw every host pid and command line, and the host's
// mountinfo and net/unix, Landlock granting the host's whole /proc.
TEST(LaunchTest, WithoutTheMinimalRootAPidNamespaceStillHasItsOwnProc) {
  if (!HostEtcDir::Allowed()) GTEST_SKIP() << kWritesInEtc;
  SymlinkLoopInEtc loop;
  SandboxSpec spec = ShellSpec(absl::StrCat(kProcView, "; grep -c . /proc/self/mountinfo "
                                            ">/dev/null && echo child reads its own"));
  spec.protections.protect_system = Requirement::kBestEffort;
  spec.hidden_paths = {loop.path()};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  // mountns is not listed: it is protectSystem's, found missing.
  EXPECT_THAT(launched.in_force, Contains("pidns"));
  ASSERT_FALSE(launched.missing.empty());
  EXPECT_EQ(launched.missing[0], loop.Error());
  EXPECT_EQ(std::vector<std::string>(launched.missing.begin() + 1, launched.missing.end()),
            AndLandlockGaps({}, /*tcp_wanted=*/false, /*host_tree=*/true));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "pids: /proc/1\npid 1 readable\nself readable\nchild reads its own\n");
}

// Without a /proc of its own (no mount namespace: protectSystem off), a
// service sees the host's, of which Landlock grants nothing: not the
// host's pids, nor their command lines, though a pid namespace is in force.
TEST(LaunchTest, TheHostsProcShowsAServiceNothing) {
  // Not even its own entries: a Landlock rule on /proc/PID would be lost
  // whenever the kernel drops the cached inode (memory reclaim).
  SandboxSpec spec = ShellSpec(kProcView);
  spec.protections.protect_system = Requirement::kOff;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, AllOf(Not(Contains("mountns")), Contains("pidns")));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "pids: /proc/[0-9]*\npid 1 refused\nself refused\n");
}

// The minimal root without a pid namespace has no /proc at all (the host's
// would show the host): /dev/fd and /dev/stdin lead nowhere. The README
// promised "its own /proc"; `missing` says so now, protectSystem staying
// in force.
// The private /tmp is bounded in files as in bytes: an empty file costs no
// bytes but pins kernel memory, and tmpfs's default allows half of RAM in
// pages of them (minimal_root.h).
TEST(LaunchTest, ThePrivateTmpIsBoundedInFilesAndBytes) {
  ASSERT_OK_AND_ASSIGN(
      LaunchedProcess launched,
      LaunchAndWait(ShellSpec("stat -f -c %c /tmp && echo $(( $(stat -f -c '%b * %S' /tmp) ))")));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, absl::StrCat(kTmpInodes, "\n", kTmpBytes, "\n"));
}

TEST(LaunchTest, TheMinimalRootWithoutAPidNamespaceListsItsMissingProc) {
  SandboxSpec spec = ShellSpec("test -e /proc/self && echo proc; test -e /dev/stdin && echo stdin; true");
  spec.protections.private_pids = Requirement::kOff;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  EXPECT_THAT(launched.in_force, AllOf(Contains("mountns"), Not(Contains("pidns"))));
  EXPECT_EQ(launched.missing,
            AndLandlockGaps({"protectSystem: no /proc without privatePids (the host's would "
                             "show every host process): /dev/fd, /dev/stdin, /dev/stdout and "
                             "/dev/stderr lead nowhere"}));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "");
}

TEST(LaunchTest, MissingProgramIsNotFoundAndLeavesNoChild) {
  // The child finds out when it opens the program, wherever it lies.
  for (const char* program : {"/nonexistent/capbroker-program", "/usr/bin/capbroker-no-such"}) {
    SandboxSpec spec = ShellSpec("");
    spec.argv = {program};
    EXPECT_THAT(LaunchAndWait(spec), StatusIs(absl::StatusCode::kNotFound, HasSubstr(program)));
    EXPECT_TRUE(NoChildren()) << program;
  }
}

TEST(LaunchTest, EnvironmentIsTheSpecsPlusSocketActivation) {
  int a[2], b[2];
  ASSERT_EQ(pipe2(a, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(b, O_CLOEXEC), 0);
  UniqueFd a0(a[0]), a1(a[1]), b0(b[0]), b1(b[1]);
  SandboxSpec spec = ShellSpec("");
  spec.argv = {"/usr/bin/env"};
  spec.env = {"FOO=bar", "EMPTY="};
  spec.fds = {{"alpha", a[0], false, false}, {"beta", b[1], false, false}};
  spec.broker_fd = a[1];
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_THAT(Lines(finished.output),
              UnorderedElementsAre("FOO=bar", "EMPTY=", "LISTEN_FDS=2", "LISTEN_PID=1",
                                   "LISTEN_FDNAMES=alpha:beta", "CAPBROKER_FD=5"));

  // No fds, no broker: no variables for them.
  SandboxSpec bare = spec;
  bare.fds.clear();
  bare.broker_fd = -1;
  ASSERT_OK_AND_ASSIGN(LaunchedProcess bare_launched, LaunchAndWait(bare));
  ASSERT_OK_AND_ASSIGN(Finished bare_finished, RunToEnd(bare_launched));
  EXPECT_THAT(Lines(bare_finished.output), UnorderedElementsAre("FOO=bar", "EMPTY="));
}

TEST(LaunchTest, PassedFdsArriveInOrderAndWork) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  SandboxSpec spec = ShellSpec("echo through-fd-3 >&3; echo $LISTEN_FDNAMES");
  spec.fds = {{"pipe", write_end.get(), false, false}};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  write_end.reset();
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "pipe\n");
  char buffer[64] = {};
  ASSERT_GT(read(read_end.get(), buffer, sizeof buffer - 1), 0);
  EXPECT_STREQ(buffer, "through-fd-3\n");
}

TEST(LaunchTest, FdsOfTheBrokerDoNotLeak) {
  // Without close-on-exec, as a careless library might leave one.
  UniqueFd leaky(open("/dev/null", O_RDONLY));
  ASSERT_TRUE(leaky.valid());
  SandboxSpec spec = ShellSpec("");
  spec.argv = {RunfileRealPath("tests/sandbox/escape_probe"), "--list-fds"};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_THAT(Lines(finished.output), ElementsAre("fds: 0 1 2", "done"));
}

TEST(LaunchTest, SignalStateOfTheBrokerIsNotInherited) {
  // As the broker has it: SIGTERM blocked (read from a signalfd), SIGPIPE
  // ignored.
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &term, &old_mask), 0);
  sighandler_t old_pipe = signal(SIGPIPE, SIG_IGN);
  SandboxSpec spec = ShellSpec("");
  spec.argv = {"/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"};
  absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
  signal(SIGPIPE, old_pipe);
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ASSERT_OK(launched.status());
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(*launched));
  EXPECT_THAT(Lines(finished.output),
              ElementsAre("SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"));
}

// Writes `value` to the calling process's oom_score_adj: "" or why not.
std::string SetOomScoreAdj(int value) {
  UniqueFd oom(open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
  std::string text = std::to_string(value);
  if (!oom.valid() ||
      write(oom.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return absl::StrCat("oom_score_adj ", value, ": ", strerror(errno));
  }
  return "";
}

// Sets the calling process's nice value, I/O priority (the idle class) and
// umask as a broker's unit may have set them: "" or what failed.
std::string SetNiceIoClassAndUmask(int nice, mode_t mask) {
  if (setpriority(PRIO_PROCESS, 0, nice) != 0) return absl::StrCat("setpriority: ", strerror(errno));
  constexpr int kIoprioWhoProcess = 1;
  constexpr int kIoprioClassIdle = 3;
  if (syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, kIoprioClassIdle << 13) != 0) {
    return absl::StrCat("ioprio_set: ", strerror(errno));
  }
  umask(mask);
  return "";
}

// What a service reports of the state above, one line each.
std::string ProcessStateOfAService() {
  absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(ShellSpec(
      "grep ^Umask: /proc/self/status; cat /proc/self/oom_score_adj; "
      "cut -d' ' -f19 /proc/self/stat; ionice"));
  if (!launched.ok()) return launched.status().ToString();
  absl::StatusOr<Finished> finished = RunToEnd(*launched);
  return finished.ok() ? finished->output : finished.status().ToString();
}

// A broker's unit may set OOMScoreAdjust= (dbus-broker ships -900), Nice=,
// IOSchedulingClass= and UMask=: none of it reaches a service, which starts
// with systemd's defaults (umask 022, oom_score_adj 0, nice 0, no I/O class).
TEST(LaunchTest, TheBrokersOomScoreNiceIoPriorityAndUmaskAreNotInherited) {
  ChildResult result = RunInChild([] {
    std::string set = absl::StrCat(SetOomScoreAdj(100), SetNiceIoClassAndUmask(5, 0));
    return set.empty() ? ProcessStateOfAService() : set;
  });
  EXPECT_EQ(result.output, "Umask:\t0022\n0\n0\nnone: prio 0\n");
}

// A broker without root may raise its service's oom_score_adj and nice
// value back to 0: only lowering them needs privilege. The values are set
// as root, as systemd does, before the broker becomes nobody; a negative
// oom_score_adj needs CAP_SYS_RESOURCE, which some containers' root lacks:
// there the test covers the nice value alone.
TEST(LaunchTest, ABrokerWithoutRootResetsANegativeOomScoreAndNice) {
  ChildResult result = RunInChild([] {
    SetOomScoreAdj(-900);  // or 0, as above
    std::string set = SetNiceIoClassAndUmask(-5, 0);
    return set.empty() ? AsNonRootBroker(ProcessStateOfAService) : set;
  });
  EXPECT_EQ(result.output, "Umask:\t0022\n0\n0\nnone: prio 0\n");
}

// A broker without root started at a positive nice value (set by root)
// cannot lower its service's: the service keeps the broker's, which makes
// it only slower, never faster, and starts all the same. (So with a
// positive oom_score_adj set by a root with CAP_SYS_RESOURCE, which sets the
// floor there too; a root without it, as in some containers, sets no floor,
// so that case cannot be made here.)
TEST(LaunchTest, ABrokerWithoutRootLeavesAPositiveNice) {
  ChildResult result = RunInChild([] {
    std::string set = SetNiceIoClassAndUmask(5, 0);
    return set.empty() ? AsNonRootBroker(ProcessStateOfAService) : set;
  });
  EXPECT_EQ(result.output, "Umask:\t0022\n0\n5\nnone: prio 0\n");
}

TEST(LaunchTest, StaticProgramOutsideTheSystemDirectoriesRuns) {
  std::string program = RunfileRealPath("tests/sandbox/static_hello");
  ASSERT_FALSE(absl::StartsWith(program, "/usr/")) << program;
  // It is static indeed: no program header asks for a dynamic loader.
  std::ifstream elf(program, std::ios::binary);
  Elf64_Ehdr header;
  ASSERT_TRUE(elf.read(reinterpret_cast<char*>(&header), sizeof header));
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr ph;
    elf.seekg(header.e_phoff + i * header.e_phentsize);
    ASSERT_TRUE(elf.read(reinterpret_cast<char*>(&ph), sizeof ph));
    ASSERT_NE(ph.p_type, static_cast<uint32_t>(PT_INTERP)) << program << " is dynamic";
  }
  // Where Bazel built it, and a copy in the host's /tmp, over which the
  // sandbox mounts its own /tmp (noexec): the program is opened first and
  // bound on its own.
  TempDir tmp;
  ASSERT_TRUE(absl::StartsWith(tmp.path(), "/tmp/")) << tmp.path();
  std::string copy = tmp.WriteFile("hello", ReadWholeFile(program), 0755);
  for (const std::string& path : {program, copy}) {
    SandboxSpec spec = ShellSpec("");
    spec.argv = {path};
    ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
    ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
    EXPECT_EQ(finished.output, "static hello\n") << path;
    EXPECT_TRUE(WIFEXITED(finished.wait_status) && WEXITSTATUS(finished.wait_status) == 0);
  }
}

// A program named by a link in a system directory to a file elsewhere is
// judged by the file: bound into the minimal root at its real path and run
// from there, rather than left to the link, which would dangle there. The
// link is the test's own: a tmpfs over /usr/local in a mount namespace of
// the test's child, which the service's mount namespace copies (the bind
// of /usr takes its submounts along); the file is in the host's /tmp, over
// which the sandbox mounts its own.
TEST(LaunchTest, ALinkInASystemDirectoryToAProgramElsewhereRuns) {
  if (geteuid() != 0) GTEST_SKIP() << "mounts over /usr/local, which takes root";
  TempDir tmp;
  std::string program =
      tmp.WriteFile("hello", ReadWholeFile(RunfileRealPath("tests/sandbox/static_hello")), 0755);
  const std::string link = "/usr/local/bin/capbroker-hello";
  ChildResult result = RunInChild([&]() -> std::string {
    if (unshare(CLONE_NEWNS) != 0) return absl::StrCat("unshare: ", strerror(errno));
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", "/usr/local", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") != 0 ||
        mkdir("/usr/local/bin", 0755) != 0 || symlink(program.c_str(), link.c_str()) != 0) {
      return absl::StrCat("making ", link, ": ", strerror(errno));
    }
    SandboxSpec spec = ShellSpec("");
    spec.argv = {link};
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
    if (!launched.ok()) return launched.status().ToString();
    absl::StatusOr<Finished> finished = RunToEnd(*launched);
    return finished.ok() ? finished->output : finished.status().ToString();
  });
  EXPECT_EQ(result.output, "static hello\n");
}

TEST(LaunchTest, KillingTheServiceKillsItsWholeNamespace) {
  // The background sleep holds the output pipe too: end of file on it means
  // the sleep is gone as well.
  SandboxSpec spec = ShellSpec("sleep 1000 & echo started; wait");
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  ASSERT_OK(ReadUntil(launched.output.get(), "started\n").status());
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, launched.pidfd.get(), SIGKILL, nullptr, 0), 0);
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_TRUE(WIFSIGNALED(finished.wait_status) && WTERMSIG(finished.wait_status) == SIGKILL);
  EXPECT_TRUE(NoChildren());
}

// A user namespace of the test's own, in which the kernel refuses network
// namespaces (user.max_net_namespaces = 0): privateNetwork is unavailable.
std::string WithoutNetworkNamespaces(Requirement network) {
  ChildResult result = RunInChild([&]() -> std::string {
    if (unshare(CLONE_NEWUSER) != 0) return absl::StrCat("unshare: ", strerror(errno));
    for (auto [file, text] : {std::pair{"setgroups", "deny"}, {"uid_map", "0 0 1"},
                              {"gid_map", "0 0 1"}}) {
      std::ofstream out(absl::StrCat("/proc/self/", file));
      if (!(out << text << std::flush)) return absl::StrCat("writing ", file, " failed");
    }
    std::ofstream limit("/proc/sys/user/max_net_namespaces");
    if (!(limit << "0" << std::flush)) return "writing max_net_namespaces failed";
    SandboxSpec spec = ShellSpec("id -u");
    spec.uid = 0;
    spec.gid = 0;
    spec.protections.private_network = network;
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
    std::string described = Describe(launched);
    if (launched.ok()) {
      absl::StatusOr<Finished> finished = RunToEnd(*launched);
      absl::StrAppend(&described, "; output: ",
                      finished.ok() ? finished->output : finished.status().ToString());
    }
    return absl::StrCat(described, NoChildren() ? "" : "; a child is left");
  });
  return result.output;
}

TEST(LaunchTest, RequiredProtectionThatIsUnavailableFailsTheLaunchNamingIt) {
  EXPECT_EQ(WithoutNetworkNamespaces(Requirement::kRequired),
            "FAILED_PRECONDITION: privateNetwork is required but a network namespace could "
            "not be created: clone3(CLONE_NEWNET): No space left on device");
}

TEST(LaunchTest, BestEffortProtectionThatIsUnavailableIsListedAsMissing) {
  ASSERT_OK_AND_ASSIGN(int abi, landlock::Abi());
  EXPECT_EQ(WithoutNetworkNamespaces(Requirement::kBestEffort),
            absl::StrCat("in force: userns mountns pidns ipcns utsns nnp caps seccomp landlock:",
                         abi,
                         "; missing: ",
                         MissingAndLandlockGaps({"privateNetwork: a network namespace could not "
                                                 "be created: clone3(CLONE_NEWNET): No space "
                                                 "left on device"}),
                         "; output: 0\n"));
}

// clone3 fails with EAGAIN at the process limit: no namespace is at fault,
// and none must be reported as missing or refused.
TEST(LaunchTest, ACloneFailureThatIsNoNamespacesFaultIsReportedAsItIs) {
  std::string result = AsNonRootBroker([] {
    // This process is one of nobody's: a limit of 1 refuses any other.
    rlimit one = {1, 1};
    if (setrlimit(RLIMIT_NPROC, &one) != 0) return absl::StrCat("setrlimit: ", strerror(errno));
    return Describe(LaunchAndWait(ShellSpec("true")));
  });
  EXPECT_THAT(result, HasSubstr("UNAVAILABLE: clone3(CLONE_NEWUSER|CLONE_NEWNS|"));
  EXPECT_THAT(result, HasSubstr("Resource temporarily unavailable"));
  EXPECT_THAT(result, Not(HasSubstr("could not be created")));
}

// Runs `body` in a child (RunInChild), in a mount namespace of its own where
// static_hello lies on a FUSE file system (FuseFile) mounted for it; what
// `body` returns. StartLaunch wants a single-threaded caller because the
// child runs ordinary code; the server thread is blocked in poll(2), holding
// no lock, until the child, by then a process of its own, makes its request.
std::string WithProgramOnFuse(
    const std::function<std::string(std::unique_ptr<FuseFile>& fuse)>& body) {
  std::string program = RunfileRealPath("tests/sandbox/static_hello");
  return RunInChild([&]() -> std::string {
           if (unshare(CLONE_NEWNS) != 0 ||
               mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
             return absl::StrCat("private mount namespace: ", strerror(errno));
           }
           TempDir dir;
           absl::StatusOr<std::unique_ptr<FuseFile>> fuse =
               FuseFile::Mount(dir.path(), "program", program, /*cache=*/false);
           if (!fuse.ok()) return fuse.status().ToString();
           return body(*fuse);
         })
      .output;
}

// A child that dies before execve (the OOM killer, an administrator's kill)
// closes the report pipe as execve would: it is a failed launch, not a
// service that started. The program lies on a FUSE file system whose server
// kills whoever looks it up: the child, as it opens the program.
TEST(LaunchTest, AChildKilledBeforeExecveIsAFailedLaunch) {
  std::string result = WithProgramOnFuse([](std::unique_ptr<FuseFile>& fuse) {
    fuse->KillRequesters();
    SandboxSpec spec = ShellSpec("");
    spec.argv = {fuse->path()};
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
    return absl::StrCat(Describe(launched), NoChildren() ? "" : "; a child is left");
  });
  EXPECT_THAT(result, HasSubstr("UNAVAILABLE: the child died before execve (killed by SIGKILL)"));
  EXPECT_THAT(result, Not(HasSubstr("a child is left")));
}

// Nothing waits on the child: one stuck in its setup, here on its program,
// which lies on a FUSE file system whose server holds every request (as a
// hung NFS or FUSE server would; even SIGKILL cannot end the wait), stalls
// neither StartLaunch nor Continue. Given up, it is reaped once the server
// goes and its pidfd says it has died.
TEST(LaunchTest, AChildStuckInItsSetupStallsNobody) {
  std::string result = WithProgramOnFuse([](std::unique_ptr<FuseFile>& fuse) -> std::string {
    fuse->HoldRequests();
    SandboxSpec spec = ShellSpec("");
    spec.argv = {fuse->path()};
    absl::StatusOr<std::unique_ptr<PendingLaunch>> launch = StartLaunch(spec);
    if (!launch.ok()) return launch.status().ToString();
    // A safety net, not a wait for time to pass: the child's look-up of its
    // program reaches the server at once.
    pollfd held{fuse->held_fd(), POLLIN, 0};
    if (poll(&held, 1, testing::kServiceTimeoutMs) != 1) return "the child never asked";
    absl::StatusOr<std::optional<LaunchedProcess>> step = (*launch)->Continue();
    std::string out = !step.ok()          ? step.status().ToString()
                      : step->has_value() ? "launched"
                                          : "still setting up";
    AbandonedChild child = (*launch)->Abandon();
    fuse.reset();  // aborts the connection: the request fails, SIGKILL ends the child
    pollfd exited{child.pidfd.get(), POLLIN, 0};
    if (poll(&exited, 1, testing::kServiceTimeoutMs) != 1) return out + "; still alive";
    siginfo_t info{};
    if (waitid(static_cast<idtype_t>(P_PIDFD), child.pidfd.get(), &info, WEXITED | WNOHANG) !=
        0) {
      return absl::StrCat(out, "; waitid: ", strerror(errno));
    }
    return absl::StrCat(out, "; ", DescribeExit(info), NoChildren() ? "" : "; a child is left");
  });
  EXPECT_EQ(result, "still setting up; killed by SIGKILL");
}

// A namespace probe (when clone3 refuses a namespace, the broker names it by
// creating a child in each) waits for its child's exit on the broker's only
// thread; that exit closes nothing of the broker's. The broker here holds a
// file on a FUSE file system whose server then holds every request: a child
// with a copy of the fd table would wait at its exit for the FLUSH of its
// copy, and the probe with it.
TEST(LaunchTest, ANamespaceProbeDoesNotWaitOnTheBrokersFiles) {
  std::string result = WithProgramOnFuse([](std::unique_ptr<FuseFile>& fuse) -> std::string {
    // Opened after the mount, so above the fixture's /dev/fuse fd: a copy of
    // the table closes the device first (not the last one: no abort) and
    // then waits on this file's FLUSH until fuse.reset() below.
    UniqueFd file(open(fuse->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!file.valid()) return absl::StrCat("open: ", strerror(errno));
    fuse->HoldRequests();
    std::future<absl::Status> probe = std::async(std::launch::async, [] {
      return ProbeNamespace(CLONE_NEWNET, CLONE_NEWUSER);
    });
    // A safety net, not a wait for time to pass: the probe's child exits at
    // once unless it waits on the server.
    bool done = probe.wait_for(std::chrono::milliseconds(testing::kServiceTimeoutMs)) ==
                std::future_status::ready;
    fuse.reset();  // aborts the connection: a held FLUSH fails
    absl::Status status = probe.get();
    return absl::StrCat(done ? "returned" : "waited on the server", ": ", status.ToString());
  });
  EXPECT_EQ(result, "returned: OK");
}

TEST(LaunchTest, BrokerWithoutRootRunsServicesOnlyAsItself) {
  EXPECT_EQ(AsNonRootBroker([] {
              SandboxSpec spec = ShellSpec("true");
              spec.uid = 0;
              spec.gid = 0;
              return Describe(LaunchAndWait(spec));
            }),
            "INVALID_ARGUMENT: uid 0 gid 0: a broker that is not root (uid 65534) can run "
            "services only as its own uid and gid");
}

TEST(LaunchTest, BrokerWithoutRootHasEveryProtection) {
  ASSERT_OK_AND_ASSIGN(int abi, landlock::Abi());
  // A directory grant of the broker's own: usable, and ".." at its top stays
  // in it, as with a root broker.
  TempDir dir;
  ASSERT_EQ(chown(dir.path().c_str(), kNobody, kNobody), 0);
  std::string result = AsNonRootBroker([&] {
    UniqueFd granted(open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    SandboxSpec spec = ShellSpec(
        "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
        "cd /proc/self/fd/3 && echo x > made && ls ..");
    spec.fds = {{"data", granted.get(), true, true}};
    absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
    std::string described = Describe(launched);
    if (!launched.ok()) return described;
    absl::StatusOr<Finished> finished = RunToEnd(*launched);
    return absl::StrCat(described, "; output: ",
                        finished.ok() ? finished->output : finished.status().ToString());
  });
  EXPECT_EQ(result, absl::StrCat("in force: userns mountns pidns ipcns utsns netns nnp caps "
                                 "seccomp landlock:", abi, "; missing: ",
                                 MissingAndLandlockGaps({}), "; output: 65534\n"
                                 "CapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
                                 "made\n"));
  EXPECT_EQ(access(dir.Join("made").c_str(), F_OK), 0);
}

// A broker that is not root cannot drop its supplementary groups, so its
// services keep them (in their user namespace they show as the overflow
// group, yet give access all the same): said under missing.
TEST(LaunchTest, ABrokerWithoutRootListsTheGroupsItsServicesKeep) {
  std::string result = AsNonRootBroker(
      [] {
        absl::StatusOr<LaunchedProcess> launched =
            LaunchAndWait(ShellSpec("grep '^Groups:' /proc/self/status"));
        std::string described = Describe(launched);
        if (!launched.ok()) return described;
        absl::StatusOr<Finished> finished = RunToEnd(*launched);
        return absl::StrCat(described, "; output: ",
                            finished.ok() ? finished->output : finished.status().ToString());
      },
      {4242, kNobody, 4243});
  EXPECT_THAT(result, HasSubstr("; missing: supplementary groups: the service keeps the broker's "
                                "groups 4242 4243, and every file they may read or write"));
  EXPECT_THAT(result, HasSubstr("run the broker as a user without supplementary groups"));
  EXPECT_THAT(result, HasSubstr("output: Groups:\t65534 65534 65534"));
}

// A directory grant below a directory that root enters only by
// CAP_DAC_OVERRIDE (another user's 0700 home, say). The service needs no
// path to it, only the fd; nor does the sandbox: the grant is detached
// from the broker's fd without a lookup by path, which the broker's child,
// in a user namespace without override over unmapped users' files, would
// be refused. ".." at its top stays in it.
TEST(LaunchTest, ADirectoryGrantBelowAnotherUsersPrivateDirectoryWorks) {
  ASSERT_EQ(geteuid(), 0u) << "gives a directory to another uid";
  TempDir dir;
  const std::string alice = dir.Join("alice");
  const std::string data = alice + "/data";
  ASSERT_EQ(mkdir(alice.c_str(), 0700), 0) << strerror(errno);
  ASSERT_EQ(mkdir(data.c_str(), 0755), 0) << strerror(errno);
  std::ofstream(data + "/inside") << "x";
  ASSERT_EQ(chown(alice.c_str(), 1000, 1000), 0) << strerror(errno);
  UniqueFd granted(open(data.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(granted.valid()) << strerror(errno);
  SandboxSpec spec = ShellSpec("cd /proc/self/fd/3 && ls && ls ..");
  spec.fds = {{"data", granted.get(), true, false}};
  ASSERT_OK_AND_ASSIGN(LaunchedProcess launched, LaunchAndWait(spec));
  ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(launched));
  EXPECT_EQ(finished.output, "inside\ninside\n");
}

// A grant the sandbox cannot open again fails the launch naming the grant,
// what is wrong and what to do: a directory another user keeps to
// themselves (for a root broker), or one on a path the broker's user may
// not search (for a broker that is not root, which finds it by path).
TEST(LaunchTest, ADirectoryGrantTheSandboxCannotOpenIsNamed) {
  ASSERT_EQ(geteuid(), 0u) << "gives a directory to another uid";
  TempDir dir;
  const std::string data = dir.Join("data");
  ASSERT_EQ(mkdir(data.c_str(), 0700), 0) << strerror(errno);
  UniqueFd granted(open(data.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(granted.valid()) << strerror(errno);
  SandboxSpec spec = ShellSpec("true");
  spec.fds = {{"data", granted.get(), true, false}};

  ASSERT_EQ(chown(data.c_str(), 1000, 1000), 0) << strerror(errno);
  EXPECT_THAT(
      LaunchAndWait(spec),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr(absl::StrCat(
                         "protectSystem is required but a directory grant could not be "
                         "confined to its directory: grant 'data': directory ", data,
                         " cannot be given to the service: openat(")),
                     HasSubstr("Permission denied; the sandbox's setup has CAP_DAC_OVERRIDE "
                               "only over the service's own files: make the directory "
                               "readable and searchable by the service's uid: o+rx, or "
                               "owned by its user (u+rx) or its group (g+rx)"))));

  // The broker that is not root (nobody) holds the fd, opened by root, of a
  // directory below root's 0700 one.
  ASSERT_EQ(chown(data.c_str(), 0, 0), 0) << strerror(errno);
  ASSERT_EQ(chmod(data.c_str(), 0755), 0) << strerror(errno);
  std::string result = AsNonRootBroker([&] { return Describe(LaunchAndWait(spec)); });
  EXPECT_THAT(result, HasSubstr(absl::StrCat(
                          "grant 'data': directory ", data, " cannot be given to the service: "
                          "open(", data, ", O_PATH): Permission denied; the sandbox's setup "
                          "finds it again by its path and has CAP_DAC_OVERRIDE only over the "
                          "service's own files: make each directory on the path searchable by "
                          "others (o+x), or run capbrokerd as root, which needs no path")));
  EXPECT_TRUE(NoChildren());
}

// A limit the policy asks for is applied or the service does not start: as
// reported, a launch without a usable cgroup ran the service without its
// memoryMax, with only a "missing" line to show for it.
TEST(LaunchTest, CgroupLimitsWithoutAUsableCgroupFailTheLaunch) {
  SandboxSpec spec = ShellSpec("true");
  spec.limits.memory_max = 64 << 20;
  EXPECT_THAT(LaunchAndWait(spec),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("memoryMax needs a cgroup, and the broker has none: start "
                                 "capbrokerd with --cgroup DIR")));
  spec.limits.pids_max = 8;
  EXPECT_THAT(LaunchAndWait(spec), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("memoryMax and pidsMax need a cgroup")));

  TempDir not_a_cgroup;
  spec.limits.cgroup_parent = not_a_cgroup.path();
  EXPECT_THAT(LaunchAndWait(spec),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("memoryMax and pidsMax: cannot make the "
                                              "service's cgroup in --cgroup ",
                                              not_a_cgroup.path(), ": ", not_a_cgroup.path(),
                                              " is not a cgroup v2 directory"))));
  spec.limits.cgroup_parent = "/nonexistent";
  EXPECT_THAT(LaunchAndWait(spec), StatusIs(absl::StatusCode::kNotFound,
                                     HasSubstr("cannot make the service's cgroup")));
}

// Makes `parent`, a cgroup named by this test's pid. One there already is a
// leftover of an earlier process that had this pid (a test killed at its
// timeout never removes it), which no live process can be using: its
// cgroups are removed first, deepest first (a cgroup goes by rmdir alone,
// once empty), or mkdir fails with EEXIST.
void MakeOwnCgroup(const std::string& parent) {
  std::vector<std::string> leftovers;
  std::error_code absent;  // the usual case: nothing to remove
  std::error_code error;
  if (std::filesystem::is_directory(parent, absent)) {
    leftovers.push_back(parent);
    for (auto it = std::filesystem::recursive_directory_iterator(parent, error);
         !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
      if (it->is_directory()) leftovers.push_back(it->path());
    }
  }
  ASSERT_FALSE(error) << "listing " << parent << ": " << error.message();
  for (auto dir = leftovers.rbegin(); dir != leftovers.rend(); ++dir) {
    ASSERT_EQ(rmdir(dir->c_str()), 0) << "removing " << *dir << ", left by an earlier process: "
                                      << strerror(errno);
  }
  ASSERT_EQ(mkdir(parent.c_str(), 0755), 0) << parent << ": " << strerror(errno);
}

TEST(LaunchTest, CgroupLimitsApplyWhereTheControllersAre) {
  std::string hierarchy = WritableCgroup2Mount();
  if (hierarchy.empty()) GTEST_SKIP() << "no writable cgroup v2 hierarchy";
  std::string parent = absl::StrCat(hierarchy, "/capbroker-launch-test-", getpid());
  ASSERT_NO_FATAL_FAILURE(MakeOwnCgroup(parent));
  SandboxSpec spec = ShellSpec("cat /proc/self/cgroup");
  spec.limits.cgroup_parent = parent;
  spec.limits.pids_max = 16;
  absl::StatusOr<LaunchedProcess> launched = LaunchAndWait(spec);
  bool has_pids = absl::StrContains(ReadWholeFile(parent + "/cgroup.controllers"), "pids");
  if (has_pids) {
    ASSERT_OK(launched.status());
    EXPECT_THAT(launched->in_force, Contains("cgroup"));
    EXPECT_EQ(launched->missing, AndLandlockGaps({}));
    EXPECT_EQ(ReadWholeFile(launched->cgroup + "/pids.max"), "16\n");
    ASSERT_OK_AND_ASSIGN(Finished finished, RunToEnd(*launched));
    EXPECT_THAT(finished.output,
                HasSubstr(absl::StrCat(launched->cgroup.substr(hierarchy.size()), "\n")));
    EXPECT_EQ(rmdir(launched->cgroup.c_str()), 0) << strerror(errno);
  } else {
    // Here (a hybrid hierarchy whose pids controller is bound to cgroup v1)
    // the limit cannot be set: the launch fails, naming the limit, and
    // nothing is left behind (the parent's rmdir below succeeds).
    EXPECT_THAT(launched, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   AllOf(HasSubstr("pidsMax: cannot make the service's "
                                                   "cgroup"),
                                         HasSubstr("pids.max does not exist"))));
  }
  EXPECT_EQ(rmdir(parent.c_str()), 0) << strerror(errno);
}

// The service's cgroup entries in `parent`: "" when none.
std::string ServiceCgroupsIn(const std::string& parent) {
  std::string found;
  for (const auto& entry : std::filesystem::directory_iterator(parent)) {
    std::string name = entry.path().filename();
    if (absl::StartsWith(name, "capbroker-")) absl::StrAppend(&found, name, " ");
  }
  return found;
}

// A launch that fails before its service runs leaves no cgroup behind. As
// reviewed, StartLaunch made the cgroup before its pipes, and returned
// without removing it when they failed: here the fds run out, as they may
// in a broker holding many connections.
TEST(LaunchTest, AFailedLaunchLeavesNoCgroup) {
  std::string hierarchy = WritableCgroup2Mount();
  if (hierarchy.empty()) GTEST_SKIP() << "no writable cgroup v2 hierarchy here";
  std::string controllers = ReadWholeFile(hierarchy + "/cgroup.subtree_control");
  bool pids = absl::StrContains(controllers, "pids");
  bool memory = absl::StrContains(controllers, "memory");
  if (!pids && !memory) {
    GTEST_SKIP() << "the cgroup v2 hierarchy at " << hierarchy
                 << " enables neither pids nor memory (its cgroup.subtree_control: \""
                 << absl::StripTrailingAsciiWhitespace(controllers)
                 << "\"; a hybrid layout binds them to cgroup v1), so no service cgroup "
                    "with a limit can be made here";
  }
  std::string parent = absl::StrCat(hierarchy, "/capbroker-launch-test-", getpid());
  ASSERT_NO_FATAL_FAILURE(MakeOwnCgroup(parent));
  absl::Cleanup remove_parent = [&] { EXPECT_EQ(rmdir(parent.c_str()), 0) << strerror(errno); };
  {
    std::string enable = pids ? "+pids" : "+memory";
    UniqueFd control(open((parent + "/cgroup.subtree_control").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(control.valid()) << strerror(errno);
    ASSERT_EQ(write(control.get(), enable.data(), enable.size()),
              static_cast<ssize_t>(enable.size()))
        << strerror(errno);
  }
  SandboxSpec spec = ShellSpec("true");
  spec.limits.cgroup_parent = parent;
  if (pids) {
    spec.limits.pids_max = 16;
  } else {
    spec.limits.memory_max = 64 << 20;
  }
  ChildResult result = RunInChild([&]() -> std::string {
    // Two fds free below the limit: room for the cgroup's directory fd (and
    // for a moment the file of its limit), not for that and a pipe too.
    int limit = 0;
    for (int free = 0; free < 2; ++limit) {
      if (fcntl(limit, F_GETFD) < 0) ++free;
    }
    rlimit fds = {static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
    if (setrlimit(RLIMIT_NOFILE, &fds) != 0) return absl::StrCat("setrlimit: ", strerror(errno));
    absl::StatusOr<std::unique_ptr<PendingLaunch>> started = StartLaunch(spec);
    if (started.ok()) return "started";
    return started.status().ToString();
  });
  EXPECT_THAT(result.output, HasSubstr("Too many open files"));
  std::string left = ServiceCgroupsIn(parent);
  EXPECT_EQ(left, "");
  for (absl::string_view name : absl::StrSplit(left, ' ', absl::SkipEmpty())) {
    rmdir(absl::StrCat(parent, "/", name).c_str());
  }
}

}  // namespace
}  // namespace capbroker::sandbox
