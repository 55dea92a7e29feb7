#include "broker/daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "broker/audit/audit_log.h"
#include "broker/daemon/audit_reopen.h"
#include "broker/daemon/environment.h"
#include "broker/daemon/hidden_config.h"
#include "broker/daemon/serve.h"
#include "broker/policy/broker_context.h"
#include "broker/policy/policy_file.h"
#include "broker/server/broker_loop.h"
#include "broker/server/listener.h"
#include "broker/server/readiness.h"
#include "broker/server/request_handler.h"
#include "broker/sandbox/cgroup.h"
#include "broker/sandbox/sandbox.h"
#include "broker/service/service_host.h"
#include "sdk/base/escape.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/socket_path.h"

namespace capbroker::daemon {
namespace {

// The fds the broker needs besides clients' connections and queued replies:
// its own (stdin, stdout, stderr, epoll, signalfd, listener, reserve, audit
// log, policy and socket directories, readiness pipe; at policy load, for
// a moment, up to kExeBatch `exe` files and the mount table: ScriptExeNotes),
// with room to spare.
constexpr rlim_t kBrokerOwnFds = 64;
// Per hosted service: its broker connection, its pidfd, its output pipe,
// and the timerfd every service that was started keeps (start timeout,
// restart delay, stop timeout: ServiceHost's EnsureTimer).
constexpr rlim_t kFdsPerService = 4;
// The first fd above stdin, stdout and stderr.
constexpr unsigned kFirstNonStandardFd = 3;

// The signals the broker reads from its signalfd: SIGTERM and SIGINT stop
// it, SIGHUP reloads the policy and reopens the audit log.
sigset_t ControlSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// Blocks the control signals, and ignores SIGPIPE and SIGXFSZ, before
// start-up does anything that takes time. Until blocked, each of them has
// its default action, which terminates the process: a log rotation's or a
// reload's SIGHUP landing while the policy loads or the audit log opens
// would kill the broker. Blocked, the kernel keeps such a signal pending,
// and the signalfd made later (SignalFd) reads it like any other, so it is
// handled, not lost, once the broker serves. The mask is inherited across
// fork and execve; services start with none blocked and none ignored
// (sandbox::ResetSignals in the child).
//
// SIGCHLD gets its default action back, without SA_NOCLDWAIT: ignored is
// inherited across execve (from a supervisor or script that set it), and
// with it the kernel reaps the broker's children as they exit, so that
// waitid on a service's pidfd fails with ECHILD and every exit, a clean one
// too, is a failure of unknown cause until the restart limit.
absl::Status BlockControlSignals() {
  sigset_t set = ControlSignals();
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return ErrnoStatus(errno, "sigprocmask");
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) return ErrnoStatus(errno, "signal(SIGPIPE)");
  // An audit log past RLIMIT_FSIZE must fail the write (EFBIG, handled:
  // grants are withheld until there is room), not kill the broker.
  if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR) return ErrnoStatus(errno, "signal(SIGXFSZ)");
  struct sigaction child_action = {};
  child_action.sa_handler = SIG_DFL;
  sigemptyset(&child_action.sa_mask);
  child_action.sa_flags = 0;  // no SA_NOCLDWAIT
  if (sigaction(SIGCHLD, &child_action, nullptr) != 0) {
    return ErrnoStatus(errno, "sigaction(SIGCHLD, SIG_DFL)");
  }
  return absl::OkStatus();
}

// A signalfd for the control signals (blocked already), including any that
// arrived during start-up and wait pending.
absl::StatusOr<UniqueFd> SignalFd() {
  sigset_t set = ControlSignals();
  return TakeFd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd");
}

// The broker's hard rlimits, which its services' limits may not exceed
// (BrokerHardLimits). getrlimit fails only for an unknown resource or a bad
// address, neither of which can happen here; a limit it did not report
// stays RLIM_INFINITY (not checked: the service's start then fails with
// EPERM, as it would without the check).
BrokerHardLimits ReadHardLimits() {
  BrokerHardLimits hard;
  for (auto [resource, field] : {std::pair{RLIMIT_NOFILE, &hard.open_files},
                                 std::pair{RLIMIT_AS, &hard.address_space},
                                 std::pair{RLIMIT_NPROC, &hard.processes},
                                 std::pair{RLIMIT_CPU, &hard.cpu_seconds}}) {
    rlimit limit;
    if (getrlimit(resource, &limit) == 0) *field = limit.rlim_max;
  }
  return hard;
}

// What this broker offers the policy it loads (see BrokerContext): at start,
// its --cgroup DIR, checked (an error stops the start); `cgroup` is what
// that check found. Its hard rlimits are read anew each time: prlimit may
// have changed them since. Its uid and gid decide which service users it
// can run (geteuid and getegid cannot fail).
BrokerContext ContextFor(const sandbox::CgroupParent& cgroup) {
  BrokerContext context;
  context.cgroup = cgroup;
  context.hard_limits = ReadHardLimits();
  context.ids = BrokerIds{geteuid(), getegid()};
  return context;
}

// The same for a reload: the --cgroup directory checked again, since its
// controllers may have changed. A directory that fails the check now is
// kept as unusable, so that only a policy that needs it is refused.
BrokerContext ReloadContext(const DaemonFlags& flags) {
  sandbox::CgroupParent cgroup;
  if (!flags.cgroup_dir.empty()) {
    absl::StatusOr<sandbox::CgroupParent> checked =
        sandbox::CheckCgroupParent(flags.cgroup_dir);
    if (checked.ok()) {
      cgroup = *checked;
    } else {
      cgroup.path = flags.cgroup_dir;
      cgroup.unusable = std::string(checked.status().message());
    }
  }
  return ContextFor(cgroup);
}

// SIGHUP: load the policy file again and install it, or keep the current
// policy whole and say why (fail closed: never half a policy). The file may
// lie in another directory now (a symlink of root's on its path
// re-pointed): what services must not reach is found again with it, and a
// policy whose directories cannot be told is not installed.
void ReloadPolicy(const DaemonFlags& flags, server::RequestHandler& handler,
                  service::ServiceHost& services, ConfigGuard& guard, server::Stats& stats) {
  const std::string& path = flags.policy_path;
  absl::StatusOr<Policy> policy = LoadPolicyFile(path, ReloadContext(flags));
  absl::StatusOr<PolicyLocation> location =
      policy.ok() ? LocatePolicy(path) : absl::StatusOr<PolicyLocation>(policy.status());
  absl::Status installed = location.ok() ? handler.SetPolicy(std::move(policy).value())
                                         : location.status();
  if (installed.ok()) guard.SetPolicy(std::move(location).value());
  stats.last_reload = MonotonicNow();
  stats.last_reload_refused = !installed.ok();
  if (!installed.ok()) {
    ++stats.policy_reload_failures;
    // Escaped where each quoted name entered it (the policy loader,
    // broker/util/trusted_path): printed as it is here, shown by capctl
    // status as it is (capctl escapes again, which leaves it unchanged).
    stats.last_reload_error = std::string(installed.message());
    std::fprintf(stderr, "capbrokerd: SIGHUP: keeping the current policy: %s\n",
                 stats.last_reload_error.c_str());
    return;
  }
  // The refusal before is history now: status reports this reload.
  stats.last_reload_error.clear();
  std::fprintf(stderr,
               "capbrokerd: SIGHUP: policy %s reloaded (%zu capabilities, %zu principals, "
               "%zu services)\n",
               EscapedKeepingUtf8(path).c_str(), handler.policy().capabilities().size(),
               handler.policy().principals().size(), handler.policy().services().size());
  services.PolicyChanged();
}

// Reads all the pending signals, then acts; true when one of them asks to
// stop. The signalfd yields the lowest-numbered first, SIGHUP (1) before
// SIGINT (2) and SIGTERM (15): acting as each is read would reload the
// policy, and maybe start services, on the way out. A stop read with a
// SIGHUP wins; a SIGHUP alone reloads once, however many were pending.
bool OnSignals(int signal_fd, const DaemonFlags& flags, audit::AuditLog& audit,
               server::RequestHandler& handler, service::ServiceHost& services,
               ConfigGuard& guard, server::Stats& stats) {
  bool stop = false;
  bool reload = false;
  signalfd_siginfo info;
  while (RetryEintr([&] { return read(signal_fd, &info, sizeof(info)); }) ==
         static_cast<ssize_t>(sizeof(info))) {
    (info.ssi_signo == SIGHUP ? reload : stop) = true;
  }
  if (reload && !stop) {
    ReopenAuditLog(flags.audit_log_path, audit, stats);
    ReloadPolicy(flags, handler, services, guard, stats);
  }
  return stop;
}

// Under socket activation fds 3 and up are systemd's sockets, inherited
// open read-write: Claim would take one for the ready pipe, and the READY
// write into it and the close after it would wreck the broker's listener.
// A LISTEN_PID or LISTEN_FDS that is not a number is refused here, as
// Listener::FromSystemd would refuse it, before any fd is claimed.
absl::Status CheckReadyFdIsNotASystemdSocket(int ready_fd) {
  CB_ASSIGN_OR_RETURN(const int count, server::SystemdSocketCount());
  if (count == 0 || ready_fd != server::kSystemdFirstFd) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "--ready-fd ", ready_fd,
      " is the socket from systemd (LISTEN_FDS); use Type=notify, or another fd"));
}

// Where the broker listens: the socket systemd passed, taken already, or
// the path it will bind (--socket, else the default). Decided before the
// audit log opens, which must not be that path's lock file.
struct ListenPlan {
  std::optional<server::Listener> inherited;
  std::string socket_path;  // when not inherited
};

absl::StatusOr<ListenPlan> PlanListener(const DaemonFlags& flags) {
  ListenPlan plan;
  CB_ASSIGN_OR_RETURN(plan.inherited, server::Listener::FromSystemd());
  if (plan.inherited.has_value()) return plan;
  plan.socket_path = flags.socket_path;
  if (plan.socket_path.empty()) {
    CB_ASSIGN_OR_RETURN(plan.socket_path, wire::DefaultSocketPath());
    // A root broker started from `su` or `sudo -E` keeps the user's
    // XDG_RUNTIME_DIR, which the default passed over: say why the socket is
    // not where that variable points.
    std::optional<std::string> foreign = wire::ForeignRuntimeDir();
    if (foreign.has_value() && plan.socket_path == wire::kSystemSocketPath) {
      std::fprintf(stderr,
                   "capbrokerd: note: %s (su and sudo -E keep a user's): listening on %s "
                   "instead; --socket chooses\n",
                   Shown(*foreign, kMaxShownReasonBytes).c_str(), Shown(plan.socket_path).c_str());
    }
  }
  return plan;
}

absl::StatusOr<server::Listener> MakeListener(ListenPlan plan, const DaemonFlags& flags) {
  if (plan.inherited.has_value()) return std::move(*plan.inherited);
  return server::Listener::Bind(plan.socket_path, flags.socket_mode);
}

// The files the audit log must never be (audit lines appended would corrupt
// them): the policy, and a socket the broker binds and its lock file. The
// log opened at the socket's path would leave a regular file there, which
// Listener::Bind refuses to replace, at this start and every later one.
std::vector<audit::ReservedFile> FilesNotForTheAuditLog(const DaemonFlags& flags,
                                                        const ListenPlan& plan) {
  std::vector<audit::ReservedFile> reserved = {{"the policy file", flags.policy_path}};
  if (!plan.inherited.has_value()) {
    reserved.push_back({"the socket", plan.socket_path});
    reserved.push_back({"the socket's lock file", server::LockFilePath(plan.socket_path)});
  }
  return reserved;
}

// The reachability warnings' own failure: `who` ("other users", "the
// socket's group") may or may not reach the socket at `path`.
void WarnCannotTell(const char* who, const std::string& path, absl::string_view why) {
  std::fprintf(stderr, "capbrokerd: warning: cannot tell whether %s can reach the socket %s: %s\n",
               who, Shown(path).c_str(), std::string(why).c_str());
}

// A broker whose socket's mode lets others connect (o+w: a root broker's
// default, or --socket-mode 0666 for a user's) is meant for every local
// user. A socket whose directory, a directory above it, or the socket
// itself keeps other users out starts without a word otherwise, and their
// clients see connect's "Permission denied", which reads like a policy
// denial: say so at start, naming what is in the way. (A socket meant for
// one group: WarnIfTheSocketsGroupCannotConnect.)
// The socket's group is the broker's gid, unless its directory is setgid
// (then the directory's group): that is the one way to let one group's
// members in, so the warning says so when the socket's own directory (or
// the socket) is in the way, rather than suggest that --socket-mode alone
// chooses users. A directory above it keeps that group out as well: then
// the warning names that directory only.
//
// Nor does a socket its environment put in the broker's user's own runtime
// directory (XDG_RUNTIME_DIR: pam_systemd sets it in a login session):
// other users' clients look in their own and then at
// wire::kSystemSocketPath, never there, so that is said instead of a
// permission hint.
void WarnIfOthersCannotConnect(const DaemonFlags& flags, const server::Listener& listener) {
  if (listener.path().empty()) return;  // systemd owns its socket
  const mode_t mode = server::SocketModeFor(flags.socket_mode);
  if ((mode & S_IWOTH) == 0) return;
  const bool root = geteuid() == 0;
  // Why other users are meant to connect.
  const std::string meant =
      root ? "A broker run as root serves every local user (the policy decides who gets what)"
           : absl::StrFormat("--socket-mode 0%o lets every local user connect",
                             static_cast<unsigned>(mode & 07777));
  const char* named = getenv("CAPBROKER_SOCKET");
  if (flags.socket_path.empty() && (named == nullptr || named[0] == '\0') &&
      listener.path() != wire::kSystemSocketPath) {
    const std::string fix =
        root ? absl::StrCat("start capbrokerd with --socket ", wire::kSystemSocketPath,
                            " (or without XDG_RUNTIME_DIR); to serve root alone")
             : "start capbrokerd with --socket in a directory other users can reach, and give "
               "their clients that path (CAPBROKER_SOCKET); to serve this user alone";
    std::fprintf(stderr,
                 "capbrokerd: warning: the socket %s comes from XDG_RUNTIME_DIR, %s own "
                 "runtime directory. %s, but other users' clients look in their own runtime "
                 "directory and then at %s, never here. To serve them, %s, pass "
                 "--socket-mode 0600\n",
                 Shown(listener.path()).c_str(), root ? "root's" : "the broker's user's",
                 meant.c_str(), wire::kSystemSocketPath, fix.c_str());
    return;
  }
  const std::string& path = listener.path();
  absl::StatusOr<std::optional<server::SocketBlocker>> found = server::FindSocketBlocker(path);
  if (!found.ok()) {
    WarnCannotTell("other users", path, found.status().message());
    return;
  }
  if (!found->has_value()) return;
  const server::SocketBlocker& blocker = **found;
  const std::string why(blocker.why.message());
  const std::string consequence = absl::StrCat(
      meant, ", but other users' clients will fail to connect with 'Permission denied'.");
  if (blocker.where == server::SocketBlocker::Where::kDirectoryAbove) {
    std::fprintf(stderr,
                 "capbrokerd: warning: %s. %s Open the way (%s), or move the socket "
                 "(--socket) to a directory other users can reach (a group for the socket "
                 "would not let that group past %s either)\n",
                 why.c_str(), consequence.c_str(), blocker.fix.c_str(), Shown(blocker.path).c_str());
    return;
  }
  const std::string dir = Shown(blocker.where == server::SocketBlocker::Where::kSocketDirectory
                                    ? blocker.path
                                    : server::SocketDirectory(path));
  const std::string open = blocker.where == server::SocketBlocker::Where::kSocketDirectory
                               ? blocker.fix
                               : "--socket-mode 0666";
  std::fprintf(stderr,
               "capbrokerd: warning: %s. %s Open the way (%s); or, to serve the members of one "
               "group alone, give the socket that group: it takes the group of a setgid "
               "directory (chgrp GROUP %s && chmod 2750 %s, then restart the broker with "
               "--socket-mode 0660)\n",
               why.c_str(), consequence.c_str(), open.c_str(), dir.c_str(), dir.c_str());
}

// A socket from systemd has the unit's permissions, which the broker did
// not choose. --socket-mode says whom the broker is meant for: a socket
// that lets in more than that is refused (the unit's SocketMode= sets it),
// for root as for any user. Without it, a broker run by a user serves that
// user alone, as Bind makes its socket (0600 in a 0700 directory), while a
// unit's defaults are 0666 in a 0755 directory: every local user could
// connect and get what the policy grants the broker's user. Refused too.
absl::Status CheckTheSocketFromSystemd(const DaemonFlags& flags, const server::Listener& listener,
                                       const peer::UnmappedIds& unmapped_ids) {
  if (!listener.path().empty()) return absl::OkStatus();
  // Whoever may change its directory may replace it, whatever its mode.
  CB_RETURN_IF_ERROR(server::CheckSocketDirectoryFromSystemd(listener.fd()));
  if (flags.socket_mode.has_value()) {
    return server::CheckSocketModeFromSystemd(listener.fd(), *flags.socket_mode, geteuid(),
                                              unmapped_ids);
  }
  if (geteuid() == 0) return absl::OkStatus();
  return server::CheckOthersCannotConnect(listener.fd(), unmapped_ids);
}

// What the serving line calls the socket: its path, or for one from systemd
// the path it is bound to, escaped.
std::string ServedSocket(const server::Listener& listener) {
  if (!listener.path().empty()) return Shown(listener.path());
  absl::StatusOr<std::string> bound = server::BoundSocketPath(listener.fd());
  if (!bound.ok() || bound->empty()) return "the socket from systemd";
  return absl::StrCat("the socket from systemd at ", Shown(*bound));
}

// --socket-mode that lets the socket's group connect (g+w: connect takes
// write permission) and not everyone means one group of users: the
// socket's. It takes the broker's gid unless its directory is setgid.
//
// A root broker's is then root's group, which hardly anyone means: say how
// to choose the group. (A broker run with a gid of its own, as systemd's
// Group= gives it, serves that group, as it likely should.) The usual way
// in, `mkdir -m 2750 /run/capbroker`, does not survive a reboot (/run is a
// tmpfs; the broker then creates the directory 0711 root:root), which is
// how this happens after it had worked.
//
// Otherwise, as WarnIfOthersCannotConnect does for every user: a directory
// on the way that the group's members may not search (no g+x where it has
// the socket's group, no o+x where it has another) leaves their clients
// with "Permission denied"; say which, and how to open it.
void WarnIfTheSocketsGroupCannotConnect(const DaemonFlags& flags,
                                        const server::Listener& listener) {
  if (listener.path().empty() || !flags.socket_mode.has_value()) return;
  const mode_t mode = *flags.socket_mode;
  if ((mode & S_IWGRP) == 0 || (mode & S_IWOTH) != 0) return;
  const std::string& path = listener.path();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    WarnCannotTell("the socket's group", path, absl::StrCat("stat: ", std::strerror(errno)));
    return;
  }
  const std::string dir = Shown(server::SocketDirectory(path));
  if (geteuid() == 0 && getegid() == 0 && st.st_gid == 0) {
    std::fprintf(stderr,
                 "capbrokerd: warning: --socket-mode 0%o lets the socket's group connect, but "
                 "the socket %s has root's group (gid 0), the broker's own: its directory %s is "
                 "not setgid with the group you mean. To serve the members of one group, give "
                 "the directory that group and the setgid bit (chgrp GROUP %s && chmod 2750 %s) "
                 "and restart the broker; /run is emptied at boot, so have systemd-tmpfiles "
                 "make it (a tmpfiles.d line: d %s 2750 root GROUP -), or under systemd socket "
                 "activation set SocketGroup=GROUP\n",
                 static_cast<unsigned>(mode & 07777), Shown(path).c_str(), dir.c_str(), dir.c_str(),
                 dir.c_str(), dir.c_str());
    return;
  }
  absl::StatusOr<std::optional<server::SocketBlocker>> found =
      server::FindSocketBlocker(path, st.st_gid);
  if (!found.ok()) {
    WarnCannotTell("the socket's group", path, found.status().message());
    return;
  }
  if (!found->has_value()) return;
  const server::SocketBlocker& blocker = **found;
  std::fprintf(stderr,
               "capbrokerd: warning: %s. --socket-mode 0%o lets the socket's group (gid %u) "
               "connect, but its members' clients will fail to connect with 'Permission "
               "denied'. Open the way (%s)%s\n",
               std::string(blocker.why.message()).c_str(), static_cast<unsigned>(mode & 07777),
               static_cast<unsigned>(st.st_gid), blocker.fix.c_str(),
               blocker.where == server::SocketBlocker::Where::kDirectoryAbove
                   ? ", or move the socket (--socket) to a directory the group can reach"
                   : "");
}

// The broker's sockets refuse clients' fds (listener.h); say so at start
// when that falls short.
void WarnIfClientsCanSendFds(const server::Listener& listener) {
  if (!listener.fd_refusal().ok()) {
    std::fprintf(stderr,
                 "capbrokerd: warning: %s. Fds a client sends are discarded unread, and a "
                 "client can stall the broker with one: a socket that lingers on close "
                 "(SO_LINGER) is released in the broker's thread, which waits for it as long "
                 "as that client likes. Linux 6.16 closes this: the kernel then refuses fds "
                 "sent to the broker\n",
                 std::string(listener.fd_refusal().message()).c_str());
  } else if (listener.took_fds()) {
    std::fprintf(stderr,
                 "capbrokerd: warning: the socket from systemd accepted fds until now: "
                 "connections made before the broker started may hold some, and are set aside "
                 "unread if they do. Add AcceptFileDescriptors=no to the .socket unit "
                 "(systemd 258) so that it never accepts any\n");
  }
}

// Adds the broker's socket to `guard`: hidden in every service's root, with
// the lock file of a socket the broker bound, and no directory holding it
// granted (hidden_config.h). A socket from systemd is found by the path it
// is bound to; one that is not named, or whose path this mount namespace
// does not hold (then neither a service's root, built from this namespace,
// nor a directory grant, opened here, holds it), adds nothing.
absl::Status GuardSocket(const server::Listener& listener, ConfigGuard& guard) {
  const bool from_systemd = listener.path().empty();
  std::string path = listener.path();
  if (from_systemd) {
    CB_ASSIGN_OR_RETURN(path, server::BoundSocketPath(listener.fd()));
  }
  if (path.empty()) return absl::OkStatus();
  absl::StatusOr<SocketLocation> socket =
      LocateSocket(path, from_systemd ? "" : server::LockFilePath(path));
  if (!socket.ok()) {
    if (from_systemd && absl::IsNotFound(socket.status())) return absl::OkStatus();
    return socket.status();
  }
  guard.AddSocket(std::move(*socket));
  return absl::OkStatus();
}

}  // namespace

std::string RaiseFdLimit(const server::Limits& limits, size_t services) {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::StrCat("cannot read RLIMIT_NOFILE: ", std::strerror(errno));
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    } else {
      std::fprintf(stderr, "capbrokerd: cannot raise RLIMIT_NOFILE: %s\n",
                   std::strerror(errno));
    }
  }
  // One uid may hold --max-connections-per-uid connections and, with
  // grants it does not read, --max-queued-reply-fds fds in the broker's
  // queues: below that (and what the broker needs itself), one uid can run
  // the broker out of fds, and everyone else is refused ("out of fds").
  const rlim_t needed = static_cast<rlim_t>(limits.max_connections_per_uid) +
                        static_cast<rlim_t>(limits.max_queued_fds_total) + kBrokerOwnFds +
                        kFdsPerService * static_cast<rlim_t>(services);
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= needed) return "";
  std::string warning = absl::StrCat(
      "warning: the broker may have ", limit.rlim_cur,
      " fds (RLIMIT_NOFILE), fewer than one uid can make it hold: ",
      limits.max_connections_per_uid, " connections (--max-connections-per-uid) + ",
      limits.max_queued_fds_total, " fds in queued replies (--max-queued-reply-fds) + ",
      kBrokerOwnFds + kFdsPerService * static_cast<rlim_t>(services),
      " for itself and its services = ", needed,
      ". One uid could then run it out of fds, and others' connections would be refused. "
      "Raise the limit (LimitNOFILE= in the systemd unit, ulimit -Hn) or lower those flags");
  std::fprintf(stderr, "capbrokerd: %s\n", warning.c_str());
  return warning;
}

absl::Status RunDaemon(const DaemonFlags& flags) {
  CB_RETURN_IF_ERROR(BlockControlSignals());  // first: see there
  // Before the broker opens any fd of its own: only then does an open fd at
  // that number show that it was inherited (see ReadyFd).
  std::optional<server::ReadyFd> ready;
  if (flags.ready_fd.has_value()) {
    CB_RETURN_IF_ERROR(CheckReadyFdIsNotASystemdSocket(*flags.ready_fd));
    CB_ASSIGN_OR_RETURN(ready, server::ReadyFd::Claim(*flags.ready_fd));
  }
  // Whatever else the broker inherited above the standard fds (a shell's,
  // a script's or a CI runner's stray fds) is made close-on-exec: nothing
  // the broker execs gets it (a service's launch closes all but the
  // service's own fds as well; this holds for every exec). Not closed: a
  // wrapper may rely on the broker holding one (a lock taken through an
  // fd, a pipe whose end of file tells a supervisor that the broker
  // exited), and stdout and stderr, which the broker keeps, hold such a
  // pipe open just the same (README.md, "Inherited fds"). The ready pipe
  // (claimed above) and systemd's socket (Listener::FromSystemd) are made
  // close-on-exec where they are taken.
  CB_RETURN_IF_ERROR(MarkCloseOnExecFrom(kFirstNonStandardFd));
  // What the broker runs in, before it loads anything: a /proc it cannot
  // identify clients by, or id maps it cannot read, stop it.
  CB_RETURN_IF_ERROR(CheckOwnProcfs());
  CB_ASSIGN_OR_RETURN(const peer::UnmappedIds unmapped_ids, ReadUnmappedPeerIds());
  // Before the policy, which is checked against it: a broker told to put
  // services' limits in a cgroup directory it cannot use does not start.
  sandbox::CgroupParent cgroup;
  if (!flags.cgroup_dir.empty()) {
    CB_ASSIGN_OR_RETURN(cgroup, sandbox::CheckCgroupParent(flags.cgroup_dir));
  }
  CB_ASSIGN_OR_RETURN(Policy policy, LoadPolicyFile(flags.policy_path, ContextFor(cgroup)));
  // Before the broker opens its sockets, whose fds count against it.
  RaiseFdLimit(flags.limits, policy.services().size());
  CB_ASSIGN_OR_RETURN(PolicyLocation location, LocatePolicy(flags.policy_path));
  // Read by every launch, updated by every reload: declared before the
  // service host, which launches until it is destroyed.
  ConfigGuard guard(std::move(location));
  CB_ASSIGN_OR_RETURN(ListenPlan listen_plan, PlanListener(flags));
  audit::AuditLog audit;
  if (!flags.audit_log_path.empty()) {
    CB_ASSIGN_OR_RETURN(audit,
                        audit::AuditLog::OpenFile(flags.audit_log_path, {},
                                                  FilesNotForTheAuditLog(flags, listen_plan)));
    CB_ASSIGN_OR_RETURN(AuditLogLocation audit_location, LocateAuditLog(flags.audit_log_path));
    guard.AddAuditLog(std::move(audit_location));
  }
  // Lines are buffered until a flush, and nothing flushes at the log's
  // destruction: this writes, on every way out of here, whatever was
  // recorded after the last flush. ServeThenStop writes the stop's lines,
  // but an early return (a --ready-fd write that fails after the at-start
  // services were launched, their start grants on record) never gets
  // there, and ~ServiceHost puts launches it gives up on record as not
  // delivered. Declared after the log and before the handler, the loop and
  // the service host, it runs once they are destroyed, whatever they
  // recorded as they went, and before the log is (locals are destroyed in
  // reverse order). A stop sequence run from a guard here instead would
  // have to come after the service host to use it, and so run before its
  // destructor, missing those lines. After ServeThenStop it finds nothing
  // left and writes nothing.
  absl::Cleanup write_last_lines = [&audit] { audit.FlushAll(); };
  CB_ASSIGN_OR_RETURN(UniqueFd signals, SignalFd());
  server::Stats stats;
  stats.started = MonotonicNow();
  server::RequestHandler handler(audit, stats);
  CB_RETURN_IF_ERROR(handler.SetPolicy(std::move(policy)));
  CB_ASSIGN_OR_RETURN(server::Listener listener, MakeListener(std::move(listen_plan), flags));
  CB_RETURN_IF_ERROR(CheckTheSocketFromSystemd(flags, listener, unmapped_ids));
  WarnIfOthersCannotConnect(flags, listener);
  WarnIfTheSocketsGroupCannotConnect(flags, listener);
  WarnIfClientsCanSendFds(listener);
  CB_RETURN_IF_ERROR(GuardSocket(listener, guard));
  server::BrokerLoop loop(handler, audit, stats, flags.limits, unmapped_ids);
  CB_RETURN_IF_ERROR(loop.Usable());
  service::HostOptions host_options;
  host_options.check_grant = [&guard](absl::string_view name, int fd) {
    return guard.CheckGrant(name, fd);
  };
  host_options.launcher = LauncherHiding(guard, sandbox::StartLaunch);
  host_options.cgroup_parent = flags.cgroup_dir;
  // Declared after the loop, which it uses until its destructor has killed
  // and reaped any service still running.
  service::ServiceHost services(handler, loop, std::move(host_options));
  handler.SetServiceDirectory(&services);
  services.PolicyChanged();

  // "serving" only once the supervisor was told: a READY it cannot be
  // sent (nobody reads the pipe any more; systemd's socket gone) stops the
  // broker, and the log must not say that it served. systemd would time
  // the unit out and kill it anyway. READY=1 first: a broker that cannot
  // send it closes the ready pipe unwritten, which says it did not start.
  if (absl::Status notified = server::NotifySystemd(); !notified.ok()) {
    return absl::Status(notified.code(), absl::StrCat("not serving: ", notified.message()));
  }
  if (ready.has_value()) {
    if (absl::Status said = ready->Notify("READY"); !said.ok()) {
      return absl::Status(said.code(), absl::StrCat("not serving: ", said.message()));
    }
  }
  std::fprintf(stderr,
               "capbrokerd: serving %s with policy %s (%zu capabilities, %zu principals, "
               "%zu services)\n",
               ServedSocket(listener).c_str(), EscapedKeepingUtf8(flags.policy_path).c_str(),
               handler.policy().capabilities().size(),
               handler.policy().principals().size(), handler.policy().services().size());
  return ServeThenStop(
      loop, listener.fd(), [&listener] { listener.StopListening(); }, signals.get(),
      [&] { return OnSignals(signals.get(), flags, audit, handler, services, guard, stats); },
      services, audit);
}

}  // namespace capbroker::daemon
