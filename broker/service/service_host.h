// ServiceHost: launches, supervises and connects the services of the policy.
//
// Each service runs confined (broker/sandbox) with its grants at fds 3..
// and one connection to the broker (CAPBROKER_FD), on which it speaks the
// broker protocol as its own principal and receives `incoming` events: the
// service's ends of the connections the broker makes for permitted clients.
//
// Life of a service:
//   stopped --connect or atStart--> starting --ready--> running
//   starting/running --exit--> backoff --delay--> starting   (restart policy)
//                            \--> stopped (no restart) or failed (limit hit)
//   stopped after a short or failed run --connect--> backoff (a restart)
// A failed service stays failed until the policy is reloaded. The delay
// starts at restartDelayMs and doubles per restart in a row, to 30 s
// (RestartDelay); a run that lasted HostOptions::stable_run resets the count. A start that does not become
// ready within startTimeoutMs is killed, which counts as a failure. A
// process still there HostOptions::kill_wait after its SIGKILL (stuck in
// the kernel) has its waiting connects refused, and every connect until it
// has died (DidNotDie): it holds the grants a new instance would get. A launch
// that fails for what may pass by itself (a shortage of fds, memory or
// processes, an audit log that cannot be written) counts as a failed run;
// one that will fail again (an invalid spec, a missing program, a required
// protection the kernel refuses) fails the service at once.
//
// A connect to a service that is not running yet is answered when it is
// ready, or with the reason it could not start: never left hanging. A
// notify service's are answered once its reply to `ready` is queued
// (AnswerWaiting, which the loop calls), so that the service reads that
// reply before their `incoming` events (ServiceDirectory::Ready). The
// reason a start failed, which can quote capability paths and the policy
// file's, is told only to administrators (ConnectRequest::administrator),
// as `capctl services` shows it; others are told where to see it.
//
// Starts are rationed per service (StartLimiter, HostOptions::start_limit):
// 5 at once, then one every 200 ms (5 a second). A service that exits
// cleanly when its client leaves (inetd style) is started again by the next
// connect; without the ration one client looping connect and close would
// keep the broker's only thread launching sandboxes. A start beyond it
// waits for its turn (BACKOFF, no restart counted), and connects wait with
// it, to be answered when the service is ready or has failed; the start
// timeout runs from the launch.
//
// Starting begins with the launch of the sandbox (sandbox::StartLaunch),
// which the host finishes from the loop when the child reports (its report
// pipe becomes readable): the loop serves everyone else meanwhile, however
// long the child takes. startTimeoutMs runs from the launch's beginning, so
// it bounds the sandbox's setup too: a child stuck in it (its program on a
// hung NFS or FUSE mount) is given up, its waiting connects are told why,
// and it is killed and reaped through the loop (Reaper) whenever it dies.
// The service's grants are not bounded so: the broker opens them itself,
// in its only thread, before the launch (RequestHandler::GrantAtStart), and
// one on a file system that does not answer stalls the whole broker until
// it does, as a client's acquire would; the broker notes such paths when it
// loads the policy (broker/policy/remote_paths.h).
//
// A connect waiting for a service is withdrawn when its client's connection
// closes (ClientGone), a hosted service's broker connection included (a
// service may connect to another): on record as not delivered, its place
// freed.
//
// A service without a pid namespace (privatePids off, or best-effort and
// missing) is not pid 1 of one, so the processes it starts outlive it: its
// report's `missing` says they are not tracked. When it has a cgroup, what
// is left in it is killed once the service is reaped (cgroup.kill), and the
// cgroup removed once empty (Reaper).
//
// The host learns of exits through pidfds, reads the services' output, and
// keeps its timers, all through the loop (LoopPort); it never waits for a
// process but in StopAll(). Services die with the broker: PDEATHSIG in the
// sandbox, and StopAll() on a clean stop.
//
// Not thread-safe: used by the event-loop thread only.
#ifndef CAPBROKER_BROKER_SERVICE_SERVICE_HOST_H_
#define CAPBROKER_BROKER_SERVICE_SERVICE_HOST_H_

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/sandbox/sandbox.h"
#include "broker/server/loop_port.h"
#include "broker/service/reaper.h"
#include "broker/service/restart_delay.h"
#include "broker/service/start_limiter.h"
#include "broker/server/request_handler.h"
#include "broker/server/service_directory.h"
#include "sdk/base/syscall.h"

namespace capbroker::service {

// Begins the launch of one sandboxed process; sandbox::StartLaunch in
// production, a scripted launch in tests.
using Launcher = std::function<absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>>(
    const sandbox::SandboxSpec&)>;

inline constexpr absl::Duration kStableRun = absl::Seconds(10);
// Connects waiting for one service to become ready, and of those, the ones
// one uid may have (so that one client cannot take every place); a hosted
// service's are counted by its name, not its uid (which it may share with
// every other service, and with the user's own clients).
inline constexpr size_t kMaxPendingConnects = 1024;
inline constexpr size_t kMaxPendingConnectsPerUid = 64;
// Output lines a service may log per second; the rest are counted.
inline constexpr int kServiceLogLinesPerSecond = 100;
// How long the host waits, when it is destroyed, for the processes it has
// killed to die; one stuck in the kernel is left unreaped after that.
inline constexpr absl::Duration kFinalReapWait = absl::Seconds(1);

struct HostOptions {
  Launcher launcher;
  // Grants no service may have (capbrokerd: a directory that holds its
  // policy file or socket, daemon/hidden_config.h), checked on each fd of
  // a start once made and before any is on record (RequestHandler::
  // GrantAtStart): a refusal fails the start with that status, on record
  // as a denial, and nothing is handed out. Unset: none is refused.
  server::RequestHandler::StartCheck check_grant;
  // A delegated cgroup v2 directory for memoryMax and pidsMax; empty: none.
  std::string cgroup_parent;
  // How long a service is given after SIGTERM before SIGKILL (StopAll, a
  // service removed from the policy, one that lost its broker connection).
  absl::Duration stop_timeout = absl::Seconds(5);
  // How long a process is given to die after SIGKILL (a start or a stop
  // timeout). One still there then is stuck in the kernel (a request to a
  // hung NFS or FUSE server, where even SIGKILL waits): the connects that
  // wait for it, or for the new instance that waits for it, are refused,
  // and so is every connect until it has died (see Kill).
  absl::Duration kill_wait = absl::Seconds(5);
  // A run that lasts this long resets the count of restarts in a row.
  absl::Duration stable_run = kStableRun;
  // How often each service may be started (see above).
  StartLimit start_limit;
  // The clock the host measures on: the start ration, a run's length
  // (stable_run) and a service's uptime. MonotonicNow (CLOCK_MONOTONIC),
  // which no one can step: on the wall clock, one set back by an hour made
  // every start wait that hour and `capctl services` show an uptime that
  // wrapped, and one set forward made a crash loop's short run look stable.
  // A test steps its own.
  std::function<absl::Duration()> now = MonotonicNow;
};

class ServiceHost : public server::ServiceDirectory {
 public:
  // Borrows `handler` (the policy, and the grants made at start) and
  // `loop`, which must outlive the host.
  ServiceHost(server::RequestHandler& handler, server::LoopPort& loop, HostOptions options);
  // Kills (SIGKILL) whatever still runs, and reaps it within
  // kFinalReapWait.
  ~ServiceHost() override;

  ServiceHost(const ServiceHost&) = delete;
  ServiceHost& operator=(const ServiceHost&) = delete;

  // Takes the services of handler.policy(): call once at start and after
  // every successful reload. New atStart services start; services gone from
  // the policy are stopped; a failed service gets a fresh start. A service
  // that runs or starts and whose launch settings changed (LaunchSettings:
  // what its sandbox is made of) is restarted: logged with what changed,
  // its process stopped as a removed one's is, and its new instance started
  // once that process has exited (atStart, or connects wait for it; an
  // onDemand one otherwise at its next connect). Other changes apply to it
  // as it runs.
  void PolicyChanged();

  // Stops every service: answers the connects that wait for one to start
  // ("the broker is stopping", queued in the loop: BrokerLoop::
  // SendWhatIsQueued sends them), closes its connection (an SDK service
  // exits on that), sends SIGTERM, waits up to stop_timeout, then SIGKILL
  // and waits up to kFinalReapWait more. What each writes as it stops is
  // read meanwhile and logged (rationed as ever), so that one that writes
  // more than its pipe holds is not stuck in write() until it is killed.
  // Blocks. A launch whose program has not run yet is given up
  // (TakeLaunchReport); one whose program runs is stopped as above; one
  // that fails as it is read is logged as not restarted (NoRestart).
  void StopAll();

  // ServiceDirectory.
  absl::StatusOr<std::optional<UniqueFd>> Connect(
      const ServiceSpec& service, const server::ConnectRequest& request) override;
  void Withdraw(uint64_t connection_id, uint64_t request_id) override;
  void ConnectionLost(uint64_t connection_id) override;
  void ClientGone(uint64_t connection_id, absl::string_view why) override;
  absl::Status Ready(absl::string_view name) override;
  void AnswerWaiting(absl::string_view name) override;
  std::vector<server::ServiceReport> Report() const override;

 private:
  struct Service;

  Service* Find(absl::string_view name);
  // The service for which connect `request_id` of connection
  // `connection_id` waits, or null.
  const Service* WaitingFor(uint64_t connection_id, uint64_t request_id) const;
  // Makes the service's timer (start timeout, restart delay, stop timeout)
  // unless it has one.
  absl::Status EnsureTimer(Service& service);
  // Begins the service's launch (STARTING), or waits for its turn (BACKOFF)
  // when it was started too often; refuses (STOPPED, error) when no timer
  // can be made. An error when the launch failed at once (after
  // StartFailed).
  absl::Status Start(Service& service);
  // The launching child reported (or its deadline passed): finishes the
  // launch, fails it, or leaves it waiting. The launch's error, if it failed.
  absl::Status OnLaunchReport(Service& service);
  // Before a launch under way is given up (a reload, the start timeout,
  // the broker's stop): OnLaunchReport once, which does not wait. The
  // child's report pipe reaches its end at execve, and the loop may not
  // have read that yet: a program that runs, with its grants, would be
  // taken for a launch in its setup, its grants on record as not delivered
  // and nobody waiting for it to exit. After this, a launch still under
  // way had not run its program when its report was read (it may reach
  // execve before the kill that gives it up, which AbandonLaunch sees);
  // one that has is the service's process (Launched), its grants
  // delivered, to be stopped as a running one; one that failed went as any
  // failed launch (FailLaunch).
  void TakeLaunchReport(Service& service);
  // The launch handed the process over: it is served and supervised. One
  // the loop cannot take on (its pidfd, connection or output cannot be
  // watched) has its connection closed at once, is killed and stays the
  // service's until it has died (KillUnfinished); the error is returned.
  absl::Status Launched(Service& service, sandbox::LaunchedProcess process);
  // Gives the launch up (AbandonLaunch), then StartFailed; or, when its
  // program ran after all, leaves it the service's, killed. `status`.
  absl::Status FailLaunch(Service& service, const absl::Status& status);
  // Gives the launch up (SIGKILL), for reason `why`. A child that provably
  // never ran its program (sandbox::AbandonedChild::may_have_run) goes to
  // the reaper, its start grants not delivered (GrantsNotDelivered). One
  // that may have (it reached execve after the last read of its report)
  // had them: it stays the service's process (pidfd set), killed as
  // KillUnfinished does, so that no restart nor a reload's new instance
  // (HasPredecessor) runs beside it while it dies.
  void AbandonLaunch(Service& service, const absl::Status& why);
  // Has the loop watch the service's pidfd (OnExit); Service::exit_watched
  // says whether it does. The loop's error, if it cannot.
  absl::Status WatchExit(Service& service);
  // A process whose program runs but whose start cannot be finished
  // (`why`): logs it, answers the waiting connects that it could not
  // start, and kills it (Kill); it stays the service's own until it has
  // died (OnExit, or DidNotDie).
  void KillUnfinished(Service& service, absl::string_view why);
  // The start grants on record and not yet delivered (Service::undelivered
  // in service_host.cc says when they are) get their "not delivered"
  // denials, for reason `why`; none are pending after.
  void GrantsNotDelivered(Service& service, const absl::Status& why);
  // A start that failed with `status` (returned): its start grants not yet
  // delivered are on record as such (GrantsNotDelivered); answers the
  // waiting connects with it, then schedules another try as for a failed run when
  // the failure may pass by itself, else marks the service failed until a
  // reload. One that failed as its service was retired or stopped
  // (NoRestart) is logged so and left STOPPED: no try, nothing counted.
  absl::Status StartFailed(Service& service, const absl::Status& status);
  // Why a start of `service` that failed is not tried again: a reload
  // replaced it or removed it (Retire), or the broker stops (StopAll).
  // Empty when it may be.
  absl::string_view NoRestart(const Service& service) const;
  // Counts a restart in a row and waits its delay (BACKOFF), or gives up
  // (FAILED) once restartLimit restarts in a row were made.
  void ScheduleRestart(Service& service);
  // Grants, broker connection (its broker end kept in the service) and
  // sandbox settings, then the launcher.
  absl::StatusOr<std::unique_ptr<sandbox::PendingLaunch>> BeginLaunch(Service& service);
  void OnExit(Service& service);
  // Whether the service's process has exited (its pidfd is readable), even
  // if the loop has not reported it yet.
  static bool HasExited(const Service& service);
  void OnOutput(Service& service);
  // Logs one line of the service's output, prefixed with its name.
  void LogOutput(const Service& service, absl::string_view line) const;
  // Logs "(N lines of output suppressed)" unless `count` is 0.
  void LogSuppressed(const Service& service, uint64_t count) const;
  // The service's output has ended (its pipe closed, or the process ended
  // or is given up): logs the count of lines suppressed that no line
  // reported, then the unterminated rest.
  void EndOfOutput(Service& service);
  // Reads and logs what is left of the output of a process that has ended
  // or is given up, without waiting, then EndOfOutput.
  void LogLastOutput(Service& service);
  void OnTimer(Service& service);
  // RUNNING from now on. Its waiting connects are the caller's to answer
  // (AnswerPending): at once for an exec service, and for a notify
  // service once its reply to ready is queued (AnswerWaiting).
  void BecomeReady(Service& service);
  // Why a connect to the running `service` cannot be made: the loop closed
  // its broker connection (ConnectionLost).
  static absl::Status LostConnection(const Service& service);
  // Makes a connection and hands its service end to the service.
  absl::StatusOr<UniqueFd> MakeConnection(Service& service,
                                          const server::ConnectRequest& request);
  // Answers every waiting connect: connected when `status` is OK. A
  // refusal that says why a start failed names that in `start_failed`
  // ("could not start"): a client that is no administrator is told that
  // and where to see why, not why (ForClient in service_host.cc).
  void AnswerPending(Service& service, const absl::Status& status,
                     absl::string_view start_failed = "");
  // Answers the waiting connect `request` with the error `why`, on record
  // as not delivered.
  void Refuse(Service& service, const server::ConnectRequest& request,
              const absl::Status& why);
  // Decides every waiting connect again by the policy now in force: those
  // it no longer allows are refused.
  void RedecidePending(Service& service);
  // Whether the service has a process, or a launch under way, that a
  // change of its launch settings must restart (STARTING or RUNNING).
  static bool HasInstance(const Service& service);
  // Makes `service` an old instance (Service::removed): answers its waiting
  // connects with `why`, gives its launch up for `why`, and stops its
  // process (SIGTERM, SIGKILL after stop_timeout), logging `stopping`
  // unless it is empty. False when no process is left: the caller forgets
  // it.
  bool Retire(Service& service, const absl::Status& why, absl::string_view stopping);
  // Whether an old instance of the service (of the same name: removed from
  // the policy, or restarted by a reload) still runs: the service then
  // waits for it to exit.
  bool HasPredecessor(const Service& service) const;
  void ArmTimer(Service& service, absl::Duration delay);
  void Signal(Service& service, int signal);
  // SIGKILL, with `why` kept for the service's last exit (capctl services),
  // and the timer armed for kill_wait: the wait for the process to die is
  // bounded too (DidNotDie).
  void Kill(Service& service, absl::string_view why);
  // The service's process is still there kill_wait after its SIGKILL: it
  // is marked so (Service::unkillable), and the connects waiting for it, or
  // for the new instance that waits for it, are refused (WhileStuck).
  void DidNotDie(Service& service);
  // The instance of `service`'s name whose process did not die after
  // SIGKILL: `service` itself, or the old instance it waits for; or null.
  const Service* Stuck(const Service& service) const;
  // Why a connect to a service whose instance `stuck` did not die is
  // refused.
  static absl::Status WhileStuck(const Service& stuck);
  // Refuses the connects waiting for `service`, which waits for its old
  // instance `stuck`; one not to start by itself (onDemand) no longer
  // waits to start.
  void RefuseWhileStuck(Service& service, const Service& stuck);
  void Log(const Service& service, absl::string_view line) const;
  // waitid(WEXITED | WNOHANG) on the service's pidfd: si_pid is 0 while the
  // service runs. The errno status when waitid fails.
  absl::StatusOr<siginfo_t> Reap(Service& service);
  // Hands the service's process to the reaper (SIGKILL), then
  // ForgetProcess: for a process the host gives up on.
  void GiveUp(Service& service);
  // Closes the fds of a run that ended (or never began).
  void ForgetProcess(Service& service);

  server::RequestHandler& handler_;
  server::LoopPort& loop_;
  HostOptions options_;
  Reaper reaper_;
  std::vector<std::unique_ptr<Service>> services_;
  // StopAll has begun: no failed start is tried again.
  bool stopping_ = false;
};

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_SERVICE_HOST_H_
