#include "broker/service/service_host.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "broker/caps/open_path.h"
#include "broker/sandbox/namespaces.h"
#include "sdk/base/log_limiter.h"
#include "broker/service/launch_settings.h"
#include "broker/service/messages.h"
#include "broker/service/output_lines.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/names.h"
#include "sdk/wire/unix_socket.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace capbroker::service {
namespace {

using sandbox::DescribeExit;
using schema::ServiceState;

// The uid and gid of nobody, which a root broker's services run as unless
// the policy says otherwise.
constexpr uint32_t kNobody = 65534;
// Output read per wakeup of a service's pipe, at most.
constexpr size_t kOutputChunk = 16 * 1024;
constexpr int kOutputChunksPerWakeup = 4;

// Who the service is, as the broker knows it: by construction. `pid` is 0
// before it runs.
Identity ServiceIdentity(const ServiceSpec& spec, pid_t pid) {
  bool root = geteuid() == 0;
  Identity identity;
  identity.uid = spec.user.value_or(root ? kNobody : geteuid());
  identity.gid = spec.group.value_or(root ? kNobody : getegid());
  identity.pid = pid;
  identity.exe = spec.command[0];
  identity.service = spec.name;
  return identity;
}

// Where a client that is no administrator is told to look for why a
// service failed or could not start (see ForClient).
constexpr absl::string_view kWhyForAdministrators =
    "root and the broker's user see why in `capctl services`";

// `full`, a connect's refusal that quotes why a start failed, as
// `request`'s client may read it. That text can quote capability paths
// and the policy file's ("directory grant 'conf' is /x/etc, which holds the
// broker's policy file ..."), which `capctl services` shows to
// administrators only: one is told it whole; others "service 'x' `what`"
// and where to see why, with the same code, the whole text kept for the
// audit line (server::WithAuditReason).
absl::Status ForClient(const server::ConnectRequest& request, const absl::Status& full,
                       absl::string_view service, absl::string_view what) {
  if (request.administrator || full.ok()) return full;
  return server::WithAuditReason(
      absl::Status(full.code(),
                   absl::StrCat("service '", service, "' ", what, "; ", kWhyForAdministrators)),
      full.message());
}

// Whose share of a service's waiting connects (kMaxPendingConnectsPerUid)
// `request` takes, as its refusal names it: a hosted service's own ("service
// 'x'"), else its client's uid's ("uid 1000"). Not a service's uid: every
// service without `user` runs as one (nobody's on a root broker, the user's
// own on a per-user one, where the user's clients have it too), and one
// compromised service would take every place of that uid.
std::string WaitingShare(const server::ConnectRequest& request) {
  if (!request.client.service.empty()) {
    return absl::StrCat("service '", request.client.service, "'");
  }
  return absl::StrCat("uid ", request.client.uid);
}

bool Failed(const siginfo_t& info) {
  return !(info.si_code == CLD_EXITED && info.si_status == 0);
}

// What `missing` says of a service without a pid namespace, whose
// descendants, unlike those of pid 1 of one, outlive it.
std::string UntrackedDescendants(const sandbox::LaunchedProcess& process) {
  if (std::find(process.in_force.begin(), process.in_force.end(), "pidns") !=
      process.in_force.end()) {
    return "";
  }
  return process.cgroup.empty()
             ? "descendants: not tracked without a pid namespace: they may outlive the service"
             : "descendants: not tracked without a pid namespace: its cgroup is killed when "
               "it ends";
}

// What a client is told of a run that failed (capctl services' last exit, a
// connect's error): why is most often what the service wrote, which went to
// the broker's log (OnOutput) and nowhere else.
constexpr absl::string_view kOutputInLog = "; its output is in the broker's log";

// "exit status 3", "killed by SIGKILL"; or, when waitid failed, that it is
// not known and why.
std::string HowItEnded(const absl::StatusOr<siginfo_t>& info) {
  if (info.ok()) return DescribeExit(*info);
  return absl::StrCat("not known: ", info.status().message());
}

// Whether a start that failed with `status` may succeed later with nothing
// changed: a shortage of fds, memory or processes (EMFILE, ENFILE, ENOMEM,
// EAGAIN), an audit log that cannot be written, a child that died during its
// setup, a setup that outlasted the start timeout. The sandbox reports those
// with these codes (sandbox.h), as ErrnoStatus does the errnos, and the host
// its timeout with kDeadlineExceeded. Anything else, an invalid
// spec, a missing program, a required protection the kernel refuses, fails
// the same way until the policy or the system is changed.
bool MayPassByItself(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

}  // namespace

struct ServiceHost::Service {
  explicit Service(StartLimit limit) : starts(limit) {}

  ServiceSpec spec;
  // spec's grants as the capabilities they name (StartGrants): what a
  // reload compares, as it may renumber or redefine the capabilities.
  std::vector<CapabilitySpec> grants;
  ServiceState state = ServiceState::STOPPED;
  // No longer the policy's instance: removed from it, or replaced by a
  // reload that changed its launch settings. Forgotten once it exits.
  bool removed = false;
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd output;
  UniqueFd timer;
  std::string cgroup;  // made by the launch; removed once the process is reaped
  uint64_t connection_id = 0;
  // While the sandbox is set up (STARTING): the launch, and the broker's end
  // of the service's connection, served once the program runs.
  std::unique_ptr<sandbox::PendingLaunch> launch;
  UniqueFd broker_end;
  // Who the launch runs as (user, group, program), from the spec it was
  // begun with (a reload that changes them gives the launch up:
  // PolicyChanged). Its pid is set once it runs, for its broker connection.
  Identity launched_as;
  // The start grants on record as granted and not yet delivered: from when
  // their lines are recorded until the service's program runs (those whose
  // lines could not be written are taken out: StartLinesLost). A start
  // grant is delivered when the launch reaches execve: the child holds the
  // fds from its clone on, but only the program that execve runs can use
  // them; a start that fails before (the launcher's error, the child's
  // setup or execve failing, a launch given up) delivered nothing, and
  // each grant gets a "not delivered" denial (GrantsNotDelivered). A
  // program that ran and then failed (readiness, a broker connection that
  // could not be served) had them.
  std::optional<server::RequestHandler::StartRecord> undelivered;
  // When its launch began, on HostOptions::now's clock (monotonic): its
  // run's length (the back-off's stable run) and uptime are measured from
  // it.
  absl::Duration started;
  uint32_t restarts = 0;   // in total
  uint32_t in_a_row = 0;   // restarts since the last stable run
  // The last run failed and no restart followed: the next start, even one
  // a connect asks for, is a restart in a row.
  bool restart_due = false;
  std::string in_force;
  std::string missing;
  std::string last_exit;
  // Why the host killed the running process, for its last_exit.
  std::string killed_for;
  // The loop watches its pidfd (OnExit). A launched process whose pidfd
  // could not be watched is killed at once (Launched), and its timer looks
  // for its exit instead.
  bool exit_watched = false;
  // Its process was still there kill_wait after its SIGKILL (DidNotDie):
  // connects are refused until it has died.
  bool unkillable = false;
  std::vector<server::ConnectRequest> pending;
  // Started while an old instance still ran (see HasPredecessor): it
  // starts once that one has exited.
  bool after_predecessor = false;
  OutputLines lines;
  LogLimiter log_limiter{kServiceLogLinesPerSecond};
  StartLimiter starts;
};

ServiceHost::ServiceHost(server::RequestHandler& handler, server::LoopPort& loop,
                         HostOptions options)
    : handler_(handler), loop_(loop), options_(std::move(options)), reaper_(loop) {}

ServiceHost::~ServiceHost() {
  for (const std::unique_ptr<Service>& service : services_) {
    if (service->launch) AbandonLaunch(*service, absl::UnavailableError("the broker is stopping"));
    if (service->pidfd) GiveUp(*service);
  }
  reaper_.WaitAll(DeadlineAfter(kFinalReapWait));
  for (const std::unique_ptr<Service>& service : services_) {
    if (service->timer) loop_.Unwatch(service->timer.get());
  }
}

void ServiceHost::Log(const Service& service, absl::string_view line) const {
  std::fprintf(stderr, "capbrokerd: service '%s': %.*s\n", service.spec.name.c_str(),
               static_cast<int>(line.size()), line.data());
}

ServiceHost::Service* ServiceHost::Find(absl::string_view name) {
  for (const std::unique_ptr<Service>& service : services_) {
    if (service->spec.name == name && !service->removed) return service.get();
  }
  return nullptr;
}

void ServiceHost::PolicyChanged() {
  const Policy& policy = handler_.policy();
  // What a service restarted below hands its new instance: the connects
  // that waited for it, and its history. A reload is no crash: its new
  // instance keeps the start ration, the restarts in a row (the back-off
  // and restartLimit count) and in total, and the last exit, so that a
  // reload never gives a crash-looping service a fresh budget, and adds
  // nothing to them either.
  struct Carried {
    std::string name;
    std::vector<server::ConnectRequest> pending;
    StartLimiter starts;
    uint32_t restarts;
    uint32_t in_a_row;
    std::string last_exit;
  };
  std::vector<Carried> carried;
  for (size_t i = 0; i < services_.size();) {
    Service& service = *services_[i];
    const ServiceSpec* spec = policy.FindService(service.spec.name);
    absl::Status retired;
    std::string stopping;  // logged as it is stopped; "" for none
    if (spec != nullptr && !service.removed) {
      std::vector<CapabilitySpec> grants = StartGrants(policy, *spec);
      std::vector<std::string> changed;
      if (HasInstance(service)) {
        const Identity was = ServiceIdentity(service.spec, 0);
        const Identity will_be = ServiceIdentity(*spec, 0);
        changed = ChangedLaunchSettings(
            {service.spec, service.grants, was.uid, was.gid},
            {*spec, grants, will_be.uid, will_be.gid},
            service.state == ServiceState::STARTING ? InstancePhase::kStarting
                                                    : InstancePhase::kRunning);
      }
      RedecidePending(service);
      if (changed.empty()) {
        service.spec = *spec;
        service.grants = std::move(grants);
        // Waiting for its old instance to exit, with nobody waiting for it
        // any more, and not to start by itself.
        if (service.after_predecessor && service.pending.empty() &&
            service.spec.activation != Activation::kAtStart) {
          service.after_predecessor = false;
        }
        if (service.state == ServiceState::FAILED) {
          service.state = ServiceState::STOPPED;  // a reload is a fresh chance
          service.in_a_row = 0;
          service.restart_due = false;
        }
        ++i;
        continue;
      }
      // What its process was started with is no longer what the policy
      // says: a grant withdrawn or a protection tightened must not stay in
      // force, unnoticed, for as long as the process runs. It is stopped
      // and its new instance started as one removed and added back, which
      // waits for the old process to exit (HasPredecessor).
      const std::string what = absl::StrCat("the reload changed its launch settings (",
                                            absl::StrJoin(changed, ", "), ")");
      Log(service, absl::StrCat("restarts: ", what));
      retired = absl::UnavailableError(
          absl::StrCat("service '", service.spec.name, "' restarts: ", what));
      // The line above says why it stops.
      carried.push_back({service.spec.name, std::move(service.pending), service.starts,
                         service.restarts, service.in_a_row, service.last_exit});
      service.pending.clear();
    } else {
      retired = absl::UnavailableError(
          absl::StrCat("service '", service.spec.name, "' was removed from the policy"));
      stopping = "removed from the policy: stopping";
    }
    if (Retire(service, retired, stopping)) {
      ++i;
    } else {
      if (service.timer) loop_.Unwatch(service.timer.get());
      services_.erase(services_.begin() + static_cast<long>(i));
    }
  }
  for (const ServiceSpec& spec : policy.services()) {
    if (Find(spec.name) != nullptr) continue;
    auto service = std::make_unique<Service>(options_.start_limit);
    service->spec = spec;
    service->grants = StartGrants(policy, spec);
    services_.push_back(std::move(service));
  }
  for (Carried& old : carried) {
    Service& service = *Find(old.name);
    service.pending = std::move(old.pending);
    service.starts = std::move(old.starts);
    service.restarts = old.restarts;
    service.in_a_row = old.in_a_row;
    service.last_exit = std::move(old.last_exit);
  }
  for (const std::unique_ptr<Service>& service : services_) {
    if (service->removed || service->state != ServiceState::STOPPED) continue;
    // A restarted service's waiting connects ask for its new instance.
    if (service->spec.activation == Activation::kAtStart || !service->pending.empty()) {
      Start(*service).IgnoreError();  // logged; a connect says why too
    }
  }
}

bool ServiceHost::HasInstance(const Service& service) {
  return service.state == ServiceState::STARTING || service.state == ServiceState::RUNNING;
}

bool ServiceHost::Retire(Service& service, const absl::Status& why,
                         absl::string_view stopping) {
  service.removed = true;
  // Connects waiting for it are answered now: it will never become ready.
  AnswerPending(service, why);
  TakeLaunchReport(service);
  if (service.launch) AbandonLaunch(service, why);
  if (!service.pidfd) return false;
  if (service.state != ServiceState::STOPPING) {
    if (!stopping.empty()) Log(service, stopping);
    service.state = ServiceState::STOPPING;
    loop_.CloseConnection(service.connection_id);
    // One sent SIGKILL already has its timer for that (Kill): SIGTERM
    // would change nothing, and a stop timeout would put off DidNotDie.
    if (service.killed_for.empty()) {
      Signal(service, SIGTERM);
      ArmTimer(service, options_.stop_timeout);
    }
  }
  return true;
}

absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> ServiceHost::BeginLaunch(
    Service& service) {
  const ServiceSpec& spec = service.spec;
  sandbox::SandboxSpec sandbox;
  sandbox.name = spec.name;
  sandbox.argv = spec.command;
  sandbox.env = spec.environment;
  const Identity identity = ServiceIdentity(spec, 0);
  sandbox.uid = identity.uid;
  sandbox.gid = identity.gid;
  sandbox.protections = spec.protections;
  sandbox.limits = spec.limits;
  sandbox.limits.cgroup_parent = options_.cgroup_parent;

  // The grants are made fresh for every run, as for a client's request;
  // none is on record as granted unless all are made and pass the check.
  CB_ASSIGN_OR_RETURN(server::RequestHandler::StartGrants grants,
                      handler_.GrantAtStart(identity, spec.grants, options_.check_grant));
  for (size_t i = 0; i < spec.grants.size(); ++i) {
    const CapabilitySpec& capability = handler_.policy().capabilities()[spec.grants[i]];
    sandbox::PassedFd passed;
    passed.name = capability.name;
    passed.fd = grants.fds[i].get();
    passed.directory = capability.kind == Kind::kDirectory;
    passed.writable = capability.access != schema::Access::READ;
    sandbox.fds.push_back(std::move(passed));
  }
  // As for a client's grant: on record before it is delivered. A flush can
  // write some of the lines and lose the rest (a full disk takes what
  // fits): the start fails, and each grant whose line is on record gets its
  // "not delivered" denial (StartFailed), those lost none.
  service.undelivered = std::move(grants.record);
  // What their opens do to the file system waits for the lines too: a file
  // is emptied only once they are all written; the files made go again
  // when the start fails here (caps::OpenEffects).
  if (std::vector<uint64_t> lost = loop_.AuditLinesLost(service.undelivered->AuditLines());
      !lost.empty()) {
    server::RequestHandler::UndoEffects(absl::MakeSpan(grants.effects));
    handler_.StartLinesLost(*service.undelivered, lost);
    return absl::UnavailableError("the audit lines of its grants could not be written");
  }
  for (size_t i = 0; i < grants.effects.size(); ++i) {
    if (absl::Status completed = grants.effects[i].Complete(grants.fds[i].get());
        !completed.ok()) {
      return absl::Status(completed.code(),
                          absl::StrCat("capability '", sandbox.fds[i].name,
                                       "' could not be emptied: ", completed.message()));
    }
  }
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus(errno, "socketpair(broker connection)");
  }
  UniqueFd broker_end(pair[0]);
  UniqueFd service_end(pair[1]);
  sandbox.broker_fd = service_end.get();
  CB_RETURN_IF_ERROR(SetNonBlocking(broker_end.get(), true));
  // The broker takes no fds from a service either: a compromised one must
  // not stall it (see wire::FdPolicy). Before the service has its end.
  CB_RETURN_IF_ERROR(wire::RefuseFdsWhereSupported(broker_end.get()));
  // The child has its copies of the grants and the service's end now.
  CB_ASSIGN_OR_RETURN(std::unique_ptr<sandbox::PendingLaunch> launch,
                      options_.launcher(sandbox));
  service.broker_end = std::move(broker_end);
  service.launched_as = identity;
  return launch;
}

absl::Status ServiceHost::EnsureTimer(Service& service) {
  if (service.timer) return absl::OkStatus();
  CB_ASSIGN_OR_RETURN(UniqueFd timer,
                      TakeFd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK),
                             "timerfd_create"));
  Service* raw = &service;
  CB_RETURN_IF_ERROR(loop_.Watch(timer.get(), [this, raw] { OnTimer(*raw); }));
  service.timer = std::move(timer);
  return absl::OkStatus();
}

bool ServiceHost::HasPredecessor(const Service& service) const {
  return std::any_of(services_.begin(), services_.end(), [&](const auto& other) {
    return other.get() != &service && other->removed && other->pidfd &&
           other->spec.name == service.spec.name;
  });
}

absl::Status ServiceHost::Start(Service& service) {
  if (HasPredecessor(service)) {
    // Removed from the policy and added back, or restarted by a reload,
    // before the old process exited: two instances would share its grants
    // (its files, its shared memory). Connects wait (it stays STOPPED);
    // OnExit of the old one starts it.
    if (!service.after_predecessor) {
      Log(service, "starts once its old instance has exited");
    }
    service.after_predecessor = true;
    if (const Service* stuck = Stuck(service)) RefuseWhileStuck(service, *stuck);
    return absl::OkStatus();
  }
  service.after_predecessor = false;
  // Without a timer there would be no start timeout and no restart delay:
  // no start. Made here, not with the service, so that an fd shortage when
  // the policy was loaded does not outlast it.
  if (absl::Status timer = EnsureTimer(service); !timer.ok()) {
    service.state = ServiceState::STOPPED;
    service.last_exit = absl::StrCat("could not start: no timer: ", timer.message());
    Log(service, service.last_exit);
    AnswerPending(service,
                  absl::UnavailableError(
                      absl::StrCat("service '", service.spec.name, "' ", service.last_exit)),
                  "could not start");
    return timer;
  }
  if (absl::Duration wait = service.starts.TryTake(options_.now()); wait > absl::ZeroDuration()) {
    // Not a restart: it is not counted, and its connects wait for its turn.
    service.state = ServiceState::BACKOFF;
    Log(service, absl::StrCat("started too often (", options_.start_limit.burst,
                              " starts at once, then one every ",
                              absl::FormatDuration(options_.start_limit.interval),
                              "): starting in ", absl::FormatDuration(wait)));
    ArmTimer(service, wait);
    return absl::OkStatus();
  }
  service.restart_due = false;
  absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> launch = BeginLaunch(service);
  if (!launch.ok()) return StartFailed(service, launch.status());  // not delivered, if made
  service.launch = std::move(*launch);
  service.pid = service.launch->pid();
  service.started = options_.now();
  service.state = ServiceState::STARTING;
  // One deadline for the sandbox's setup and the readiness that follows.
  ArmTimer(service, absl::Milliseconds(service.spec.start_timeout_ms));
  Service* raw = &service;
  absl::Status watched = loop_.Watch(service.launch->report_fd(), [this, raw] {
    OnLaunchReport(*raw).IgnoreError();  // logged, and pending connects told
  });
  if (!watched.ok()) return FailLaunch(service, watched);
  // A failure after the clone is known already.
  return OnLaunchReport(service);
}

absl::Status ServiceHost::OnLaunchReport(Service& service) {
  if (!service.launch) return absl::OkStatus();  // over since the loop saw the fd
  absl::StatusOr<std::optional<sandbox::LaunchedProcess>> step = service.launch->Continue();
  if (!step.ok()) return FailLaunch(service, step.status());
  if (!step->has_value()) return absl::OkStatus();  // still setting itself up
  loop_.Unwatch(service.launch->report_fd());
  service.launch.reset();
  service.undelivered.reset();  // the program runs: delivered
  return Launched(service, std::move(**step));
}

void ServiceHost::TakeLaunchReport(Service& service) {
  OnLaunchReport(service).IgnoreError();  // logged, and pending connects told
}

absl::Status ServiceHost::Launched(Service& service, sandbox::LaunchedProcess process) {
  service.pidfd = std::move(process.pidfd);
  service.output = std::move(process.output);
  if (std::string untracked = UntrackedDescendants(process); !untracked.empty()) {
    process.missing.push_back(std::move(untracked));
  }
  service.cgroup = std::move(process.cgroup);
  service.in_force = absl::StrJoin(process.in_force, " ");
  service.missing = absl::StrJoin(process.missing, "; ");

  // Its exit first: whatever else fails, the loop then tells when it dies.
  absl::Status watched = WatchExit(service);
  Service* raw = &service;
  if (watched.ok()) {
    Identity identity = service.launched_as;
    identity.pid = service.pid;
    absl::StatusOr<uint64_t> id =
        loop_.AddServiceConnection(std::move(service.broker_end), std::move(identity));
    watched = id.status();
    if (id.ok()) service.connection_id = *id;
  }
  if (watched.ok()) {
    watched = loop_.Watch(service.output.get(), [this, raw] { OnOutput(*raw); });
  }
  if (!watched.ok()) {
    // It cannot be served or supervised, so it must not run. Its
    // connection, if the loop took it, is closed now: what the program
    // queued on it (opens that create or empty files) must not be served
    // to a process being killed as unservable.
    service.broker_end.reset();  // not served, if the pidfd's watch failed first
    loop_.CloseConnection(service.connection_id);
    service.connection_id = 0;
    KillUnfinished(service,
                   absl::StrCat("the broker could not serve it (", watched.message(), ")"));
    return watched;
  }
  Log(service, absl::StrCat("started, pid ", service.pid, "; in force: ", service.in_force,
                            service.missing.empty() ? "" : "; missing: ", service.missing));
  // A notify service has the rest of the start timeout to say it is ready
  // (Ready, then AnswerWaiting once its reply is queued); an exec service
  // is ready now, and its socket holds nothing of the broker's yet.
  if (service.spec.readiness == Readiness::kExec) {
    BecomeReady(service);
    AnswerPending(service, absl::OkStatus());
  }
  return absl::OkStatus();
}

absl::Status ServiceHost::WatchExit(Service& service) {
  Service* raw = &service;
  absl::Status watched = loop_.Watch(service.pidfd.get(), [this, raw] { OnExit(*raw); });
  service.exit_watched = watched.ok();
  return watched;
}

void ServiceHost::KillUnfinished(Service& service, absl::string_view why) {
  // Its program runs, with the service's start grants, until it has died.
  // It stays the service's own meanwhile, killed and waited for as one not
  // ready in time is (Kill, then OnExit or DidNotDie): handed to the
  // reaper, it would be out of sight of the host, and a restart, or the
  // new instance of a reload (HasPredecessor), would run a second instance
  // with the same grants while it dies. Its exit goes as a failed run's
  // (the restart policy applies).
  Log(service, absl::StrCat(why, "; killing it"));
  AnswerPending(service,
                absl::UnavailableError(absl::StrCat("service '", service.spec.name,
                                                    "' could not start: ", why)),
                "could not start");
  Kill(service, why);
}

absl::Status ServiceHost::FailLaunch(Service& service, const absl::Status& status) {
  AbandonLaunch(service, status);
  // Its program ran after all (AbandonLaunch): a run, being killed.
  if (service.pidfd) return status;
  ArmTimer(service, absl::ZeroDuration());  // the start timeout
  return StartFailed(service, status);
}

void ServiceHost::GrantsNotDelivered(Service& service, const absl::Status& why) {
  if (!service.undelivered) return;
  handler_.StartNotDelivered(*service.undelivered, why);
  service.undelivered.reset();
}

void ServiceHost::AbandonLaunch(Service& service, const absl::Status& why) {
  loop_.Unwatch(service.launch->report_fd());
  sandbox::AbandonedChild child = service.launch->Abandon();
  service.launch.reset();
  service.broker_end.reset();
  if (!child.may_have_run) {
    GrantsNotDelivered(service, why);
    reaper_.Add(service.spec.name, std::move(child));
    service.pid = 0;
    return;
  }
  // The child reached execve after the last read of its report (the start
  // timeout's, a reload's or StopAll's TakeLaunchReport) and before the
  // kill: its program ran, its start grants delivered.
  service.undelivered.reset();
  service.pidfd = std::move(child.pidfd);
  service.cgroup = std::move(child.cgroup);
  WatchExit(service).IgnoreError();  // unwatched, its timer looks (OnTimer)
  KillUnfinished(service, absl::StrCat(why.message(), "; its program had started"));
}

absl::string_view ServiceHost::NoRestart(const Service& service) const {
  if (stopping_) return "the broker is stopping";
  if (service.removed) return "a reload replaced it or removed it from the policy";
  return "";
}

absl::Status ServiceHost::StartFailed(Service& service, const absl::Status& status) {
  GrantsNotDelivered(service, status);
  service.last_exit = absl::StrCat("could not start: ", status.message());
  const absl::string_view no_restart = NoRestart(service);
  Log(service, no_restart.empty()
                   ? service.last_exit
                   : absl::StrCat(service.last_exit, "; not restarting: ", no_restart));
  AnswerPending(service,
                absl::UnavailableError(
                    absl::StrCat("service '", service.spec.name, "' ", service.last_exit)),
                "could not start");
  if (!no_restart.empty()) {
    // Its launch failed as it was retired or stopped (TakeLaunchReport):
    // nothing is scheduled, and nothing counted, on an instance whose
    // counts went to its successor (PolicyChanged) or that stops.
    service.state = ServiceState::STOPPED;
  } else if (MayPassByItself(status)) {
    // As a run that failed at once: tried again after the restart delay,
    // within the restart limit.
    ScheduleRestart(service);
  } else {
    service.state = ServiceState::FAILED;
  }
  return status;
}

void ServiceHost::ScheduleRestart(Service& service) {
  if (service.in_a_row >= service.spec.restart_limit) {
    service.state = ServiceState::FAILED;
    ArmTimer(service, absl::ZeroDuration());
    Log(service, absl::StrCat("gave up after ", service.in_a_row,
                              " restarts in a row; it starts again after a policy reload"));
    return;
  }
  const absl::Duration delay =
      RestartDelay(absl::Milliseconds(service.spec.restart_delay_ms), service.in_a_row);
  ++service.in_a_row;
  ++service.restarts;
  service.state = ServiceState::BACKOFF;
  Log(service, absl::StrCat("restarting in ", absl::FormatDuration(delay), " (restart ",
                            service.in_a_row, " of at most ", service.spec.restart_limit,
                            " in a row)"));
  ArmTimer(service, delay);
}

void ServiceHost::BecomeReady(Service& service) {
  service.state = ServiceState::RUNNING;
  ArmTimer(service, absl::ZeroDuration());
  Log(service, absl::StrCat("ready after ",
                            absl::FormatDuration(options_.now() - service.started)));
}

absl::StatusOr<siginfo_t> ServiceHost::Reap(Service& service) {
  siginfo_t info{};
  if (RetryEintr([&] {
        return waitid(static_cast<idtype_t>(P_PIDFD), service.pidfd.get(), &info,
                      WEXITED | WNOHANG);
      }) != 0) {
    return ErrnoStatus(errno, absl::StrCat("waitid(pidfd of pid ", service.pid, ")"));
  }
  return info;
}

void ServiceHost::GiveUp(Service& service) {
  if (service.pidfd) loop_.Unwatch(service.pidfd.get());  // the reaper watches it now
  sandbox::AbandonedChild child;
  child.pid = service.pid;
  child.pidfd = std::move(service.pidfd);
  child.cgroup = std::move(service.cgroup);
  service.cgroup.clear();
  ForgetProcess(service);
  reaper_.Add(service.spec.name, std::move(child));
}

void ServiceHost::ForgetProcess(Service& service) {
  if (service.pidfd) loop_.Unwatch(service.pidfd.get());
  if (service.output) loop_.Unwatch(service.output.get());
  if (service.connection_id != 0) loop_.CloseConnection(service.connection_id);
  service.pidfd.reset();
  service.output.reset();
  service.connection_id = 0;
  service.pid = 0;
  service.exit_watched = false;
  service.unkillable = false;
  // Called once the process is reaped; without a pid namespace, processes
  // it started may live on in its cgroup: killed, then the cgroup removed.
  reaper_.RemoveCgroup(service.spec.name, std::move(service.cgroup));
  service.cgroup.clear();
}

bool ServiceHost::HasExited(const Service& service) {
  pollfd p{service.pidfd.get(), POLLIN, 0};
  return service.pidfd && RetryEintr([&] { return poll(&p, 1, 0); }) == 1;
}

void ServiceHost::OnExit(Service& service) {
  absl::StatusOr<siginfo_t> info = Reap(service);
  if (info.ok() && info->si_pid == 0) return;  // not exited after all
  // A waitid that fails (ECHILD: reaped by someone else) would fail again at
  // every wakeup of the still readable pidfd: the run is taken as over, how
  // it ended unknown, which counts as a failure, and the pidfd is closed.
  const bool failed = !info.ok() || Failed(*info);
  LogLastOutput(service);
  ForgetProcess(service);
  const std::string ended = service.killed_for.empty()
                                ? HowItEnded(info)
                                : absl::StrCat(service.killed_for, " (", HowItEnded(info), ")");
  service.killed_for.clear();
  absl::Duration ran = options_.now() - service.started;
  Log(service, absl::StrCat("exited (", ended, ") after ", absl::FormatDuration(ran)));
  service.last_exit = failed ? absl::StrCat(ended, kOutputInLog) : ended;
  if (service.state == ServiceState::STARTING) {
    AnswerPending(service, absl::UnavailableError(absl::StrCat(
                               "service '", service.spec.name, "' exited before it was ready (",
                               ended, kOutputInLog, ")")));
  }
  if (service.removed) {
    ArmTimer(service, absl::ZeroDuration());
    loop_.Unwatch(service.timer.get());
    Service* next = Find(service.spec.name);
    auto it = std::find_if(services_.begin(), services_.end(),
                           [&](const auto& s) { return s.get() == &service; });
    services_.erase(it);  // `service` is gone from here on
    if (next != nullptr && next->after_predecessor) {
      Start(*next).IgnoreError();  // logged, and pending connects told
    }
    return;
  }
  if (service.state == ServiceState::STOPPING) {
    service.state = ServiceState::STOPPED;
    ArmTimer(service, absl::ZeroDuration());
    return;
  }
  if (ran >= options_.stable_run) service.in_a_row = 0;
  RestartMode mode = service.spec.restart;
  bool restart = mode == RestartMode::kAlways ||
                 (mode == RestartMode::kOnFailure && failed);
  if (!restart) {
    service.state = ServiceState::STOPPED;
    // A clean exit is no failure, however short the run: a service may
    // serve one connection per process (inetd style) and be started again
    // by each connect.
    service.restart_due = failed;
    ArmTimer(service, absl::ZeroDuration());
    return;
  }
  ScheduleRestart(service);
}

void ServiceHost::OnOutput(Service& service) {
  // One moment for the whole wakeup: the clock is read once, not per line,
  // and once the budget is spent the rest is counted, not built (OutputLines).
  const absl::Time now = absl::Now();
  auto allow = [&](uint64_t& suppressed) { return service.log_limiter.Allow(now, suppressed); };
  char buffer[kOutputChunk];
  for (int i = 0; i < kOutputChunksPerWakeup; ++i) {
    ssize_t n = RetryEintr([&] { return read(service.output.get(), buffer, sizeof(buffer)); });
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      // End of output (or an error): the process may live on silently.
      loop_.Unwatch(service.output.get());
      service.output.reset();
      EndOfOutput(service);
      return;
    }
    for (const OutputLine& line : service.lines.Add(absl::string_view(buffer, n), allow)) {
      LogSuppressed(service, line.suppressed_before);
      LogOutput(service, line.text);
    }
  }
}

void ServiceHost::LogSuppressed(const Service& service, uint64_t count) const {
  if (count > 0) Log(service, absl::StrCat("(", count, " lines of output suppressed)"));
}

void ServiceHost::EndOfOutput(Service& service) {
  // No line of this output follows to carry the count: it goes alone.
  OutputEnd end = service.lines.Finish(service.log_limiter.TakeSuppressed());
  LogSuppressed(service, end.suppressed);
  if (end.rest.has_value()) LogOutput(service, *end.rest);
}

void ServiceHost::LogOutput(const Service& service, absl::string_view line) const {
  std::fprintf(stderr, "capbrokerd: [%s] %.*s\n", service.spec.name.c_str(),
               static_cast<int>(line.size()), line.data());
}

void ServiceHost::LogLastOutput(Service& service) {
  // Without waiting (the pipe is non-blocking): what the process wrote
  // before it ended, as far as one wakeup's ration goes.
  if (service.output) OnOutput(service);
  EndOfOutput(service);  // done already if OnOutput met the end of the pipe
}

void ServiceHost::OnTimer(Service& service) {
  uint64_t expirations = 0;
  if (read(service.timer.get(), &expirations, sizeof(expirations)) !=
      static_cast<ssize_t>(sizeof(expirations))) {
    return;  // disarmed since it fired
  }
  if (!service.killed_for.empty() && service.pidfd) {
    // kill_wait after its SIGKILL.
    if (HasExited(service)) {
      OnExit(service);  // the loop has not said so yet; may forget `service`
      return;
    }
    DidNotDie(service);
    // Its pidfd could not be watched (Launched): the loop will not say
    // when it dies, so its timer looks again every kill_wait.
    if (!service.exit_watched) ArmTimer(service, options_.kill_wait);
    return;
  }
  // A process (launched, so served) whose broker connection closed had its
  // SIGTERM then (ConnectionLost): this is its stop timeout.
  if ((service.state == ServiceState::RUNNING ||
       (service.state == ServiceState::STARTING && !service.launch)) &&
      service.pidfd && service.connection_id == 0) {
    Log(service, "still running without its broker connection after SIGTERM; killing it");
    Kill(service, "still running without its broker connection after SIGTERM");
    return;
  }
  switch (service.state) {
    case ServiceState::BACKOFF:
      Start(service).IgnoreError();  // logged, and pending connects told
      break;
    case ServiceState::STARTING: {
      // The child may have reached execve, its report unread behind this
      // timer: then it runs, and its readiness is what is late, if it is.
      TakeLaunchReport(service);
      if (service.state != ServiceState::STARTING) break;  // ready, or failed
      // Killed for a stated reason as the report was taken (KillUnfinished:
      // the broker could not serve it, or its launch failed after its
      // program started): that reason is its end's, and kill_wait runs.
      if (!service.killed_for.empty()) break;
      if (service.launch) {
        std::string why = absl::StrCat("its sandbox was not set up within ",
                                       service.spec.start_timeout_ms,
                                       " ms (startTimeoutMs): the launch is given up");
        FailLaunch(service, absl::DeadlineExceededError(why)).IgnoreError();  // logged, told
        break;
      }
      std::string why = absl::StrCat("did not become ready within ",
                                     service.spec.start_timeout_ms, " ms");
      Log(service, absl::StrCat(why, "; killing it"));
      AnswerPending(service, absl::UnavailableError(absl::StrCat(
                                 "service '", service.spec.name, "' ", why)));
      Kill(service, why);
      break;
    }
    case ServiceState::STOPPING:
      Log(service, "still running after SIGTERM; killing it");
      Kill(service, "still running after SIGTERM");
      break;
    default:
      break;
  }
}

void ServiceHost::ArmTimer(Service& service, absl::Duration delay) {
  // Only a service never started has none, and nothing to time.
  if (!service.timer) return;
  itimerspec spec{};
  if (delay > absl::ZeroDuration()) {
    spec.it_value = absl::ToTimespec(delay);
  }
  // Zero disarms; a failure leaves the timer as it was, which only delays.
  if (timerfd_settime(service.timer.get(), 0, &spec, nullptr) != 0) {
    Log(service, absl::StrCat("timerfd_settime: ", strerror(errno)));
  }
}

void ServiceHost::Kill(Service& service, absl::string_view why) {
  service.killed_for = std::string(why);
  Signal(service, SIGKILL);
  ArmTimer(service, options_.kill_wait);
}

// A process that SIGKILL does not end at once (stuck in the kernel) could
// otherwise leave its service STARTING, or its new instance waiting for it,
// for as long as it takes, and every connect queued for that long: never
// answered. The host stops waiting after kill_wait and refuses them, but
// keeps the process, its pidfd watched: it is not handed to the reaper,
// which would say nothing when it dies. It still holds the service's grants
// (its files, its shared memory), so no new instance may start before it
// has died, or two would share them; once it has (OnExit), the service
// goes on as after any exit, and a new instance that waits for it (an
// atStart one) starts. One whose pidfd the loop could not watch (Launched)
// is looked at again every kill_wait instead, its connects refused so
// until it has died.
void ServiceHost::DidNotDie(Service& service) {
  if (service.unkillable) return;  // said already
  service.unkillable = true;
  const absl::Status why = WhileStuck(service);
  Log(service, absl::StrCat("its process ", service.pid, " did not die within ",
                            absl::FormatDuration(options_.kill_wait),
                            " of SIGKILL; connects are refused until it has"));
  AnswerPending(service, why);
  if (!service.removed) return;
  if (Service* next = Find(service.spec.name); next != nullptr && next->after_predecessor) {
    RefuseWhileStuck(*next, service);
  }
}

const ServiceHost::Service* ServiceHost::Stuck(const Service& service) const {
  if (service.unkillable) return &service;
  for (const std::unique_ptr<Service>& other : services_) {
    if (other->removed && other->unkillable && other->spec.name == service.spec.name) {
      return other.get();
    }
  }
  return nullptr;
}

absl::Status ServiceHost::WhileStuck(const Service& stuck) {
  return absl::UnavailableError(absl::StrCat(
      "service '", stuck.spec.name, "' did not die after SIGKILL (its process ", stuck.pid,
      " is stuck in the kernel, as on a hung NFS or FUSE server); it can start again once "
      "that process has died"));
}

void ServiceHost::RefuseWhileStuck(Service& service, const Service& stuck) {
  AnswerPending(service, WhileStuck(stuck));
  if (service.spec.activation != Activation::kAtStart) service.after_predecessor = false;
}

void ServiceHost::Signal(Service& service, int signal) {
  if (!service.pidfd) return;
  // Through the pidfd: the signal cannot reach another process that took
  // the pid after the service exited.
  if (syscall(SYS_pidfd_send_signal, service.pidfd.get(), signal, nullptr, 0) != 0 &&
      errno != ESRCH) {
    Log(service, absl::StrCat("pidfd_send_signal(", sigabbrev_np(signal), "): ",
                              strerror(errno)));
  }
}

absl::StatusOr<UniqueFd> ServiceHost::MakeConnection(Service& service,
                                                     const server::ConnectRequest& request) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus(errno, "socketpair(service connection)");
  }
  UniqueFd client_end(pair[0]);
  UniqueFd service_end(pair[1]);
  // A service that takes no fds from its clients gets an end that refuses
  // them before the client gets its own: the service could not turn that
  // on in time itself, since the client may send before the service has
  // taken its end.
  if (!service.spec.accepts_fds) {
    CB_RETURN_IF_ERROR(wire::RefuseFdsWhereSupported(service_end.get()));
  }
  // The service's end leaves the broker before the client gets the other:
  // the broker never holds an end a client can send fds into (see
  // BrokerLoop). The service may so hear of a connect whose grant the
  // audit log then fails to record: the client's end is withheld and
  // closed, and the service sees the connection end at once.
  if (!loop_.Deliver(service.connection_id,
                     IncomingAnswer(service.spec.name, request, std::move(service_end)))) {
    return absl::UnavailableError(absl::StrCat(
        "service '", service.spec.name,
        "' is busy: it has not taken the connections it was given, and its socket holds "
        "no more (or its broker connection has closed); try again"));
  }
  return client_end;
}

void ServiceHost::AnswerPending(Service& service, const absl::Status& status,
                                absl::string_view start_failed) {
  std::vector<server::ConnectRequest> pending = std::move(service.pending);
  service.pending.clear();
  for (const server::ConnectRequest& request : pending) {
    if (status.ok() && !loop_.IsOpen(request.connection_id)) {
      // Its client's connection closed as the connects before it were
      // answered (a reply it had no room for): ClientGone no longer found
      // it waiting. The service must not get a connection nobody holds.
      handler_.ConnectNotDelivered(
          request, service.spec.name,
          absl::UnavailableError("the client's connection closed while it waited"));
      continue;
    }
    absl::StatusOr<UniqueFd> end =
        status.ok() ? MakeConnection(service, request) : absl::StatusOr<UniqueFd>(status);
    if (end.ok()) {
      // A failed Send drops the client's end, closes the connection and
      // puts on record that the connect was not delivered, and why.
      loop_.Send(request.connection_id,
                 ConnectedAnswer(request.request_id, service.spec.name, request.principal,
                                 std::move(end).value()));
    } else if (!status.ok() && !start_failed.empty()) {
      Refuse(service, request, ForClient(request, status, service.spec.name, start_failed));
    } else {
      Refuse(service, request, end.status());
    }
  }
}

void ServiceHost::Refuse(Service& service, const server::ConnectRequest& request,
                         const absl::Status& why) {
  handler_.ConnectNotDelivered(request, service.spec.name, why);
  loop_.Send(request.connection_id, server::ErrorAnswer(request.request_id, why, false));
}

void ServiceHost::RedecidePending(Service& service) {
  // A connect waits for the service to start (up to its start timeout, and
  // a restart delay): a principal a reload cuts off must not be connected
  // by the decision of the old policy.
  std::vector<server::ConnectRequest> pending = std::move(service.pending);
  service.pending.clear();
  std::vector<std::pair<server::ConnectRequest, absl::Status>> refused;
  for (server::ConnectRequest& request : pending) {
    ConnectDecision decision =
        handler_.policy().DecideConnect(request.client, service.spec.name);
    if (!decision.status.ok()) {
      refused.emplace_back(std::move(request), decision.status);
      continue;
    }
    if (decision.principal != request.principal) {
      // Allowed now by another principal than the one on record: the
      // service would be told a principal the audit log never granted.
      refused.emplace_back(std::move(request),
                           absl::UnavailableError(absl::StrCat(
                               "the policy was reloaded while this connect waited, and "
                               "now allows it as principal '", decision.principal, "', not '",
                               request.principal, "': ask again")));
      continue;
    }
    service.pending.push_back(std::move(request));
  }
  // Refused once the connects kept are in place: a refusal that closes its
  // client's connection (its queue full) withdraws that client's other
  // connects from there (ClientGone).
  for (const auto& [request, why] : refused) Refuse(service, request, why);
}

absl::StatusOr<std::optional<UniqueFd>> ServiceHost::Connect(
    const ServiceSpec& spec, const server::ConnectRequest& request) {
  Service* service = Find(spec.name);
  if (service == nullptr) {
    return absl::InternalError(absl::StrCat("service '", spec.name, "' is not hosted"));
  }
  // A waiting connect is known by its connection and request id (Withdraw,
  // and the answer the client matches): a second one with the same pair
  // would be withdrawn, or answered, with the first.
  if (const Service* waiting = WaitingFor(request.connection_id, request.request_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request id ", request.request_id, " is already waiting for service '",
        waiting->spec.name, "' to start on this connection; give each request its own id"));
  }
  if (const Service* stuck = Stuck(*service)) return WhileStuck(*stuck);
  switch (service->state) {
    case ServiceState::RUNNING: {
      if (HasExited(*service)) {
        // It died and the loop has not said so yet: take the news now, so
        // that the connect waits for its restart instead of getting a
        // connection nobody serves.
        OnExit(*service);
        if (service->state != ServiceState::RUNNING) return Connect(spec, request);
      }
      if (service->connection_id == 0) return LostConnection(*service);
      CB_ASSIGN_OR_RETURN(UniqueFd end, MakeConnection(*service, request));
      return std::optional<UniqueFd>(std::move(end));
    }
    case ServiceState::FAILED:
      return ForClient(request,
                       absl::UnavailableError(absl::StrCat(
                           "service '", spec.name, "' has failed (", service->last_exit,
                           "); it starts again after a policy reload")),
                       spec.name, "has failed; it starts again after a policy reload");
    case ServiceState::STOPPING:
      return absl::UnavailableError(absl::StrCat("service '", spec.name, "' is stopping"));
    case ServiceState::STOPPED: {
      if (service->restart_due) {
        // Delayed and counted like an automatic restart: a client that can
        // make the service exit (a crashing input) must not keep the
        // broker's only thread launching sandboxes.
        ScheduleRestart(*service);
        return Connect(spec, request);  // now waiting (BACKOFF) or failed
      }
      absl::Status started = Start(*service);
      if (!started.ok()) {
        return ForClient(request,
                         absl::UnavailableError(absl::StrCat(
                             "service '", spec.name, "' could not start: ", started.message())),
                         spec.name, "could not start");
      }
      // Ready already only if its launch was done at once (a scripted one).
      if (service->state == ServiceState::RUNNING) {
        CB_ASSIGN_OR_RETURN(UniqueFd end, MakeConnection(*service, request));
        return std::optional<UniqueFd>(std::move(end));
      }
      break;
    }
    default:
      break;
  }
  if (service->pending.size() >= kMaxPendingConnects) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "service '", spec.name, "' has ", kMaxPendingConnects,
        " connects waiting for it to start"));
  }
  const std::string who = WaitingShare(request);
  if (std::count_if(service->pending.begin(), service->pending.end(),
                    [&](const server::ConnectRequest& r) { return WaitingShare(r) == who; }) >=
      static_cast<long>(kMaxPendingConnectsPerUid)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        who, " has ", kMaxPendingConnectsPerUid, " connects waiting for service '", spec.name,
        "' to start; try again once it has"));
  }
  service->pending.push_back(request);
  return std::optional<UniqueFd>();
}

const ServiceHost::Service* ServiceHost::WaitingFor(uint64_t connection_id,
                                                    uint64_t request_id) const {
  for (const std::unique_ptr<Service>& service : services_) {
    if (std::any_of(service->pending.begin(), service->pending.end(),
                    [&](const server::ConnectRequest& r) {
                      return r.connection_id == connection_id && r.request_id == request_id;
                    })) {
      return service.get();
    }
  }
  return nullptr;
}

void ServiceHost::Withdraw(uint64_t connection_id, uint64_t request_id) {
  for (const std::unique_ptr<Service>& service : services_) {
    std::vector<server::ConnectRequest>& pending = service->pending;
    pending.erase(std::remove_if(pending.begin(), pending.end(),
                                 [&](const server::ConnectRequest& r) {
                                   return r.connection_id == connection_id &&
                                          r.request_id == request_id;
                                 }),
                  pending.end());
  }
}

void ServiceHost::ClientGone(uint64_t connection_id, absl::string_view how) {
  const absl::Status why = absl::UnavailableError(how);
  for (const std::unique_ptr<Service>& service : services_) {
    std::vector<server::ConnectRequest>& pending = service->pending;
    auto gone = std::stable_partition(
        pending.begin(), pending.end(),
        [&](const server::ConnectRequest& r) { return r.connection_id != connection_id; });
    // Granted when it was made: on record now as never delivered. Nothing
    // is sent: nobody is there to read it.
    for (auto it = gone; it != pending.end(); ++it) {
      handler_.ConnectNotDelivered(*it, service->spec.name, why);
    }
    pending.erase(gone, pending.end());
  }
}

void ServiceHost::ConnectionLost(uint64_t connection_id) {
  for (const std::unique_ptr<Service>& service : services_) {
    if (service->connection_id != connection_id || connection_id == 0) continue;
    service->connection_id = 0;  // the loop has closed it
    // An exit closes the connection too, a moment before the pidfd says so:
    // the service may be exiting already. If not, nobody can reach it: it
    // is asked to stop, and killed if it has not within the stop timeout.
    // Its exit then goes as any other (the restart policy applies).
    if (HasExited(*service)) return;
    // Killed already (its connection closes as it dies): the kill's own
    // wait stands, and nothing more is sent.
    if (!service->killed_for.empty()) return;
    Log(*service, "its broker connection closed: stopping it, unless it is exiting already");
    Signal(*service, SIGTERM);
    ArmTimer(*service, options_.stop_timeout);
    return;
  }
}

absl::Status ServiceHost::Ready(absl::string_view name) {
  Service* service = Find(name);
  if (service == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("service '", name, "' is not hosted"));
  }
  if (!service->killed_for.empty()) {
    // A readiness that arrives after the host killed the process (sent
    // before the kill, read after it): the process is dying, or stuck.
    return absl::FailedPreconditionError(absl::StrCat(
        "service '", name, "' said it was ready after it was killed (", service->killed_for, ")"));
  }
  if (service->state == ServiceState::STARTING) {
    BecomeReady(*service);  // its waiting connects wait for AnswerWaiting
  } else if (service->state != ServiceState::RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "service '", name, "' is ", ServiceStateName(service->state), ", not starting"));
  }
  return absl::OkStatus();
}

void ServiceHost::AnswerWaiting(absl::string_view name) {
  Service* service = Find(name);
  // Anything else that became of it (it exited, it failed) has answered
  // them already.
  if (service == nullptr || service->state != ServiceState::RUNNING) return;
  if (service->connection_id == 0) {
    // The loop closed its connection (ConnectionLost), its reply to ready
    // with it: nobody would take their service ends.
    AnswerPending(*service, LostConnection(*service));
    return;
  }
  AnswerPending(*service, absl::OkStatus());
}

absl::Status ServiceHost::LostConnection(const Service& service) {
  return absl::UnavailableError(absl::StrCat(
      "service '", service.spec.name, "' lost its broker connection and is stopping"));
}

std::vector<server::ServiceReport> ServiceHost::Report() const {
  std::vector<server::ServiceReport> reports;
  const absl::Duration now = options_.now();
  for (const std::unique_ptr<Service>& service : services_) {
    server::ServiceReport r;
    r.name = service->spec.name;
    r.state = service->state;
    r.pid = service->pid;
    r.restarts = service->restarts;
    if (service->pid != 0) {
      r.uptime_seconds = static_cast<uint64_t>(
          std::max<int64_t>(0, absl::ToInt64Seconds(now - service->started)));
    }
    r.protections = service->in_force;
    r.missing = service->missing;
    r.last_exit = service->last_exit;
    r.waits_for_removed_instance = service->after_predecessor;
    r.activation =
        service->spec.activation == Activation::kAtStart ? "atStart" : "onDemand";
    r.removed = service->removed;
    reports.push_back(std::move(r));
  }
  return reports;
}

void ServiceHost::StopAll() {
  stopping_ = true;
  std::vector<Service*> running;
  const absl::Status stopping = absl::UnavailableError("the broker is stopping");
  for (const std::unique_ptr<Service>& service : services_) {
    AnswerPending(*service, stopping);
    const bool launching = service->launch != nullptr;
    TakeLaunchReport(*service);
    if (service->launch) AbandonLaunch(*service, stopping);
    if (!service->pidfd) {
      if (launching) service->state = ServiceState::STOPPED;
      continue;
    }
    service->state = ServiceState::STOPPING;
    loop_.CloseConnection(service->connection_id);
    service->connection_id = 0;
    Signal(*service, SIGTERM);
    running.push_back(service.get());
  }
  // Each service's output is read as its exit is awaited, as the loop does:
  // one that writes more than its pipe holds (64 KiB) as it stops would
  // block in write() until the SIGKILL at the deadline, the rest of what it
  // said lost. Lines are rationed as ever (OnOutput).
  struct Awaited {
    Service* service;
    bool output;  // its output, else its pidfd
  };
  const absl::Duration deadline = DeadlineAfter(options_.stop_timeout);
  while (!running.empty()) {
    // Past the deadline nothing more is read: a poll with no time left
    // still reports a pipe that holds data, and one kept full (a service
    // that floods its output and ignores SIGTERM) would hold the broker
    // here for as long as it writes.
    const absl::Duration left = deadline - MonotonicNow();
    if (left <= absl::ZeroDuration()) break;  // kill the rest
    std::vector<pollfd> fds;
    std::vector<Awaited> awaited;
    for (Service* service : running) {
      // The output before the pidfd: what it wrote before it exited is read
      // before its exit is taken (LogLastOutput reads the rest).
      if (service->output) {
        fds.push_back({service->output.get(), POLLIN, 0});
        awaited.push_back({service, true});
      }
      fds.push_back({service->pidfd.get(), POLLIN, 0});
      awaited.push_back({service, false});
    }
    // Rounded up: a wait rounded down to 0 ms would spin until the deadline.
    const int timeout_ms =
        static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    int ready = RetryEintr([&] { return poll(fds.data(), fds.size(), timeout_ms); });
    if (ready <= 0) break;  // the deadline passed (or poll failed): kill the rest
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Service& service = *awaited[i].service;
      if (awaited[i].output) {
        OnOutput(service);  // closes it at its end
        continue;
      }
      absl::StatusOr<siginfo_t> info = Reap(service);
      if (info.ok() && info->si_pid == 0) continue;  // not exited after all
      service.last_exit = HowItEnded(info);
      LogLastOutput(service);  // what it said as it stopped
      ForgetProcess(service);
      service.state = ServiceState::STOPPED;
    }
    running.erase(std::remove_if(running.begin(), running.end(),
                                 [](const Service* service) { return !service->pidfd; }),
                  running.end());
  }
  for (Service* service : running) {
    Log(*service, "still running after SIGTERM; killing it");
    service->last_exit = "sent SIGKILL when the broker stopped";
    LogLastOutput(*service);
    GiveUp(*service);
    service->state = ServiceState::STOPPED;
  }
  reaper_.WaitAll(DeadlineAfter(kFinalReapWait));
}

}  // namespace capbroker::service
