// Reaper: the processes the service host has given up on, reaped through
// the loop.
//
// A launch that failed or timed out, a service that could not be supervised,
// what is left at the broker's stop: each is sent SIGKILL here and reaped
// once its pidfd is readable, from the loop. Nothing waits for it: a process
// stuck in the kernel (a request to a hung NFS or FUSE server, where even
// SIGKILL waits) must not stall the broker, and may take any time to die.
// Once it is reaped, its cgroup (if it had one) is removed.
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

namespace capbroker::service {

class Reaper {
 public:
  // Borrows `loop`, which must outlive the reaper.
  explicit Reaper(server::LoopPort& loop) : loop_(loop) {}
  // Unwatches what is left; a process still unreaped is logged and left to
  // whoever inherits it (init, once the broker has exited).
  ~Reaper();

  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Sends `child` SIGKILL (again: an abandoned launch had it already) and
  // reaps it when it has exited. `service` names it in log lines.
  void Add(absl::string_view service, sandbox::AbandonedChild child);

  // Waits, blocking, until every process is reaped or `deadline` has
  // passed. Only for the broker's stop, which may block.
  void WaitAll(absl::Time deadline);

  // Processes not reaped yet.
  size_t pending() const { return entries_.size(); }

 private:
  struct Entry {
    std::string service;
    sandbox::AbandonedChild child;
    bool watched = false;
  };

  // Reaps `entry` if it has exited, and forgets it: true. False while it
  // runs. A failed waitid counts as reaped (it would fail again).
  bool TryReap(Entry& entry);
  void Forget(Entry* entry);
  // Reaps what the loop does not watch (its Watch failed), if it is dead.
  void Sweep();

  server::LoopPort& loop_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

}  // namespace capbroker::service

#endif  // CAPBROKER_BROKER_SERVICE_REAPER_H_
