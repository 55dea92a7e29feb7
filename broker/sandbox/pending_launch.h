// The parent's side of a launch once the child is let go: reading its
// report, checking it reached execve, handing the process over or giving it
// up. Private to the sandbox library; StartLaunch (sandbox.cc) makes these.
#ifndef CAPBROKER_BROKER_SANDBOX_PENDING_LAUNCH_H_
#define CAPBROKER_BROKER_SANDBOX_PENDING_LAUNCH_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "broker/sandbox/cgroup.h"
#include "broker/sandbox/namespaces.h"
#include "broker/sandbox/outcome.h"
#include "broker/sandbox/report_pipe.h"
#include "broker/sandbox/sandbox.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::sandbox {

// What StartLaunch hands over once the child runs.
struct LaunchParts {
  CloneResult child;
  // The child's name (OpenName), opened before it is let go: how the launch
  // tells whether it reached execve, with no new fd (CheckReachedExecve,
  // MayHaveRunProgram). Invalid when it could not be opened; the child was
  // then not let go (`failure` says why).
  UniqueFd name;
  uint64_t namespaces = 0;  // CLONE_NEW* the child was created in
  int landlock_abi = 0;
  bool landlock_deny_tcp = false;  // ChildPlan::landlock_deny_tcp
  std::optional<ServiceCgroup> cgroup;
  // The write end of the sync pipe, held until the launch is over: the child
  // takes end of file on it for the broker's death (CheckParentAlive).
  UniqueFd sync;
  UniqueFd report;  // the read end of the report pipe, non-blocking
  UniqueFd output;  // the read end of the output pipe, non-blocking
  // A failure after the clone (the name, the id maps): the first Continue()
  // says it.
  absl::Status failure;
  // Whether the child was let go (Release, sandbox.cc, wrote its byte to the
  // sync pipe). One that was not waits for it until killed: it can never
  // reach execve, whatever its name says when it is abandoned.
  bool released = false;
};

class ChildLaunch final : public PendingLaunch {
 public:
  ChildLaunch(Outcome outcome, LaunchParts parts)
      : outcome_(std::move(outcome)), parts_(std::move(parts)), failure_(parts_.failure) {}
  ~ChildLaunch() override;

  pid_t pid() const override { return parts_.child.pid; }
  int report_fd() const override { return parts_.report.get(); }
  absl::StatusOr<std::optional<LaunchedProcess>> Continue() override;
  AbandonedChild Abandon() override;

 private:
  absl::StatusOr<std::optional<LaunchedProcess>> ReadReport();
  // The cgroup's path, now the caller's to remove.
  std::string TakeCgroup();

  Outcome outcome_;
  LaunchParts parts_;
  ChildReportReader reader_;
  absl::Status failure_;  // sticky: once failed, always failed
};

}  // namespace capbroker::sandbox

#endif  // CAPBROKER_BROKER_SANDBOX_PENDING_LAUNCH_H_
