// The child's side of Launch: everything between clone3 and execve.
//
// Private to the sandbox library. The parent decides everything it can
// before the clone (which namespaces exist, the Landlock ABI, the compiled
// seccomp filter) and hands the child a ChildPlan; the child applies it in
// the one order that works:
//   1. close every fd the plan does not name: the child starts with a copy
//      of the broker's whole table (its connections, its listening socket),
//      and the kernel gives each new fd the lowest free number, so the steps
//      below must not depend on how many fds the broker happens to hold;
//      parent death signal; wait for the parent's "go" (id maps written)
//   2. new session (no controlling terminal) and a new, empty session
//      keyring (the broker's keys stay out of reach), default signal
//      actions, no signal blocked, umask 022 (the parent has set
//      oom_score_adj, nice and I/O priority back to 0 before the "go":
//      process_defaults.h)
//   3. detached directory grants, then the minimal root (both need
//      CAP_SYS_ADMIN in the user namespace), hostname, rlimits but
//      RLIMIT_NOFILE
//   4. bounding set (needs CAP_SETPCAP), then groups, gid, uid
//   5. ambient and remaining capabilities; parent death signal again (the
//      id change cleared it) and check the parent is still there
//   6. no_new_privs, Landlock
//   7. the fd table, the environment
//   8. RLIMIT_NOFILE: Landlock and the fd layout need fds of their own, and
//      a limit below the numbers they get would fail them (EMFILE); fds
//      already open above the limit stay usable (setrlimit(2) does not look
//      at them)
//   9. seccomp, last: it denies calls the steps above make
//  10. execve
// Each protection that fails is settled by its requirement: a required one
// stops the launch (reported, then _exit), a best-effort one is reported as
// missing and the launch goes on.
#ifndef CAPBROKER_BROKER_SANDBOX_CHILD_H_
#define CAPBROKER_BROKER_SANDBOX_CHILD_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "broker/sandbox/rlimits.h"
#include "broker/sandbox/sandbox.h"
#include "broker/sandbox/seccomp_filter.h"

namespace capbroker::sandbox {

struct ChildGrant {
  int fd;  // the parent's fd, which the child has at the same number
  bool directory;
  bool writable;
  // For a directory fd the parent could clone (CloneDirectoryTree), the
  // clone (O_PATH), at the same number; -1 otherwise, and the child
  // detaches a directory fd itself (DetachDirectory).
  int tree_fd = -1;
  // Why the parent could not clone it, when it tried (a root broker).
  std::string clone_error;
};

struct ChildPlan {
  std::string hostname;
  std::vector<std::string> argv;
  std::vector<std::string> env;

  // The namespaces the child was created in (CLONE_NEW*).
  uint64_t namespaces = 0;
  // Requirements as the parent settled them: kOff for what is off or was
  // already found missing.
  Requirement protect_system = Requirement::kOff;
  Requirement protect_hostname = Requirement::kOff;
  Requirement drop_capabilities = Requirement::kOff;
  Requirement no_new_privileges = Requirement::kOff;
  Requirement system_call_filter = Requirement::kOff;
  Requirement landlock = Requirement::kOff;

  std::vector<std::string> hidden_paths;  // SandboxSpec::hidden_paths

  uid_t uid = 0;
  gid_t gid = 0;
  bool clear_groups = false;  // setgroups(0): the broker is root
  std::vector<Rlimit> rlimits;  // all but RLIMIT_NOFILE
  uint64_t open_files = 0;      // RLIMIT_NOFILE; StartLaunch turns 0 into the default

  const SeccompProgram* seccomp = nullptr;  // when system_call_filter is on
  int landlock_abi = 0;                     // when landlock is on
  bool landlock_deny_tcp = false;

  // fds: all borrowed, at the numbers the parent has them. Every other fd
  // above 2 is closed at once in the child.
  std::vector<ChildGrant> grants;
  std::vector<std::string> grant_names;
  int broker_fd = -1;
  int stdin_fd = -1;        // /dev/null
  int output_fd = -1;       // the write end of the output pipe
  int sync_fd = -1;         // the read end of the parent's sync pipe
  int report_fd = -1;       // the write end of the report pipe
};

// Runs the plan in the child returned by CloneProcess; never returns.
[[noreturn]] void RunChild(const ChildPlan& plan);

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_CHILD_H_
