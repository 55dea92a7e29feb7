#include "broker/sandbox/pending_launch.h"

#include <cstdio>
#include <utility>

#include "sdk/base/status_macros.h"

namespace capbroker::sandbox {

ChildLaunch::~ChildLaunch() {
  if (!parts_.child.pidfd.valid()) return;
  // Neither handed over nor abandoned: it must not run on unsupervised.
  // Nobody will reap it; the owner should have called Abandon().
  Kill(parts_.child);
  std::fprintf(stderr, "capbroker: a launch was dropped with its child (pid %d): killed, not reaped\n",
               parts_.child.pid);
}

absl::StatusOr<std::optional<LaunchedProcess>> ChildLaunch::Continue() {
  if (!failure_.ok()) return failure_;
  if (!parts_.child.pidfd.valid()) {
    return absl::FailedPreconditionError("the launch is over: its child was handed over");
  }
  absl::StatusOr<std::optional<LaunchedProcess>> result = ReadReport();
  if (!result.ok()) failure_ = result.status();
  return result;
}

absl::StatusOr<std::optional<LaunchedProcess>> ChildLaunch::ReadReport() {
  CB_ASSIGN_OR_RETURN(std::optional<ChildReport> report,
                      reader_.ReadAvailable(parts_.report.get()));
  if (!report.has_value()) return std::nullopt;
  if (!report->failure.ok()) return report->failure;
  // End of file comes from execve closing the pipe, or from a death.
  CB_RETURN_IF_ERROR(CheckReachedExecve(parts_.child, parts_.name.get(), kExitAfterReportMs));
  for (MissingReport& missing : report->missing) {
    outcome_.MarkMissing(missing.tag, std::move(missing.entry));
  }
  outcome_.MarkLandlockGaps(parts_.landlock_abi, parts_.landlock_deny_tcp);
  LaunchedProcess launched;
  launched.in_force =
      outcome_.InForce(parts_.namespaces, parts_.landlock_abi, parts_.cgroup.has_value());
  launched.missing = outcome_.TakeEntries();
  launched.pid = parts_.child.pid;
  launched.pidfd = std::move(parts_.child.pidfd);
  launched.output = std::move(parts_.output);
  launched.cgroup = TakeCgroup();
  parts_.name.reset();  // the launch is over
  return std::optional<LaunchedProcess>(std::move(launched));
}

AbandonedChild ChildLaunch::Abandon() {
  Kill(parts_.child);
  if (failure_.ok()) failure_ = absl::AbortedError("the launch was abandoned");
  AbandonedChild abandoned;
  abandoned.pid = parts_.child.pid;
  // After the kill: a child that reaches execve now never runs its program.
  // One never let go never ran one either, whatever its name (which may
  // not even have been opened).
  abandoned.may_have_run = parts_.released && MayHaveRunProgram(parts_.name.get());
  abandoned.pidfd = std::move(parts_.child.pidfd);
  abandoned.cgroup = TakeCgroup();
  return abandoned;
}

std::string ChildLaunch::TakeCgroup() {
  if (!parts_.cgroup.has_value()) return "";
  std::string path = parts_.cgroup->Release();  // closes its fd; the directory stays
  parts_.cgroup.reset();
  return path;
}

}  // namespace capbroker::sandbox
