// Reaper: what is left of services' runs, cleaned up through the loop.
//
// Processes the service host has given up on (a launch that failed or timed
// out before its program ran, what is left at the broker's stop) are sent
// SIGKILL here and reaped once their pidfd is readable. The
// cgroup of a run that is over, the host's or the reaper's, is killed whole
// (cgroup.kill: without a pid namespace a service's descendants outlive it)
// and removed once its cgroup.events says it is empty. Nothing waits: a
// process stuck in the kernel (a request to a hung NFS or FUSE server, where
// even SIGKILL waits) must not stall the broker, and may take any time to
// die.
//
// Not thread-safe: used by the event-loop thread only.
#ifndef CAPBROKER_BROKER_SERVICE_REAPER_H_
#define CAPBROKER_BROKER_SERVICE_REAPER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "broker/sandbox/sandbox.h"
#include "broker/server/loop_port.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::service {

class Reaper {
 public:
  // Borrows `loop`, which must outlive the reaper.
  explicit Reaper(server::LoopPort& loop) : loop_(loop) {}
  // Unwatches what is left; a process still unreaped, a cgroup still there,
  // is logged and left as it is.
  ~Reaper();

  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Sends `child` SIGKILL (again: an abandoned launch had it already),
  // reaps it when it has exited, then removes its cgroup as RemoveCgroup
  // does. `service` names it in log lines.
  void Add(absl::string_view service, sandbox::AbandonedChild child);

  // Kills what is left in the cgroup `path` of a service whose process was
  // reaped, and removes the cgroup once it is empty. A kernel without
  // cgroup.kill (before 5.14) gets the rmdir alone, which fails (logged)
  // while a descendant of the service lives on.
  void RemoveCgroup(absl::string_view service, std::string path);

  // Waits, blocking, until everything is cleaned up or `deadline` (a
  // DeadlineAfter, sdk/base/syscall.h: on the monotonic clock, which a
  // clock set back cannot stretch) has passed. Only for the broker's stop,
  // which may block.
  void WaitAll(absl::Duration deadline);

  // Processes and cgroups not cleaned up yet.
  size_t pending() const { return entries_.size(); }

 private:
  struct Entry {
    std::string service;
    sandbox::AbandonedChild child;  // pidfd invalid once reaped
    UniqueFd cgroup_events;         // while a killed cgroup empties
    bool watched = false;           // the fd() below, by the loop
    // What the entry waits on: the pidfd, else the cgroup's events.
    int fd() const { return child.pidfd ? child.pidfd.get() : cgroup_events.get(); }
  };

  // Takes `entry` on: forgotten at once when it is done, else watched.
  void Keep(std::unique_ptr<Entry> entry);
  // Moves `entry` on as far as it can: reaped, then its cgroup killed and
  // removed. True when it is done (or can get no further).
  bool Progress(Entry& entry);
  // Reaps the process, if it has exited: true (a failed waitid too, which
  // would fail again).
  bool TryReap(Entry& entry);
  // True once the cgroup is gone (or cannot be removed).
  bool TryRemoveCgroup(Entry& entry);
  // Watches entry.fd() (again, once the fd it waits on changes).
  void Watch(Entry& entry);
  void Unwatch(Entry& entry);
  void Forget(Entry* entry);
  // Moves on what the loop does not watch (its Watch failed).
  void Sweep();

  server::LoopPort& loop_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_REAPER_H_
