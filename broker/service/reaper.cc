#include "broker/service/reaper.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/sandbox/cgroup.h"
#include "broker/sandbox/namespaces.h"
#include "sdk/base/syscall.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace capbroker::service {
namespace {

void Log(absl::string_view service, absl::string_view line) {
  std::fprintf(stderr, "capbrokerd: service '%.*s': %.*s\n", static_cast<int>(service.size()),
               service.data(), static_cast<int>(line.size()), line.data());
}

}  // namespace

Reaper::~Reaper() {
  for (const std::unique_ptr<Entry>& entry : entries_) {
    Unwatch(*entry);
    Log(entry->service,
        entry->child.pidfd
            ? absl::StrCat("pid ", entry->child.pid, " was killed but has not died: left unreaped")
            : absl::StrCat("cgroup ", entry->child.cgroup, " was killed but is not empty: left"));
  }
}

void Reaper::Add(absl::string_view service, sandbox::AbandonedChild child) {
  if (!child.pidfd) {
    RemoveCgroup(service, std::move(child.cgroup));
    return;
  }
  if (syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0) != 0 &&
      errno != ESRCH) {
    Log(service, absl::StrCat("pidfd_send_signal(pid ", child.pid, ", SIGKILL): ",
                              strerror(errno)));
  }
  auto entry = std::make_unique<Entry>();
  entry->service = std::string(service);
  entry->child = std::move(child);
  Keep(std::move(entry));
}

void Reaper::RemoveCgroup(absl::string_view service, std::string path) {
  if (path.empty()) return;
  auto entry = std::make_unique<Entry>();
  entry->service = std::string(service);
  entry->child.cgroup = std::move(path);
  Keep(std::move(entry));
}

void Reaper::Keep(std::unique_ptr<Entry> entry) {
  if (Progress(*entry)) return;
  if (!entry->watched) Watch(*entry);
  entries_.push_back(std::move(entry));
  Sweep();
}

bool Reaper::Progress(Entry& entry) {
  if (entry.child.pidfd) {
    if (!TryReap(entry)) return false;
    Unwatch(entry);
    entry.child.pidfd.reset();
  }
  if (entry.child.cgroup.empty() || TryRemoveCgroup(entry)) return true;
  // Now waiting on the cgroup's events rather than the pidfd.
  if (!entry.watched) Watch(entry);
  return false;
}

bool Reaper::TryReap(Entry& entry) {
  siginfo_t info{};
  if (RetryEintr([&] {
        return waitid(static_cast<idtype_t>(P_PIDFD), entry.child.pidfd.get(), &info,
                      WEXITED | WNOHANG);
      }) != 0) {
    Log(entry.service, absl::StrCat("waitid(pid ", entry.child.pid, "): ", strerror(errno),
                                    "; forgetting it"));
    return true;
  }
  if (info.si_pid == 0) return false;
  Log(entry.service, absl::StrCat("pid ", entry.child.pid, ", given up on, ended (",
                                  sandbox::DescribeExit(info), ")"));
  return true;
}

bool Reaper::TryRemoveCgroup(Entry& entry) {
  const std::string& path = entry.child.cgroup;
  if (entry.cgroup_events) {
    sandbox::DrainEvents(entry.cgroup_events.get());
  } else {
    // What is still in it: descendants of a service without a pid
    // namespace (pid 1 of one takes its whole namespace with it).
    absl::Status killed = sandbox::KillCgroup(path);
    if (!killed.ok()) {
      Log(entry.service, absl::StrCat(killed.message(), "; descendants of the service that "
                                      "outlived it keep its cgroup"));
      if (rmdir(path.c_str()) != 0) {
        Log(entry.service, absl::StrCat("rmdir(", path, "): ", strerror(errno)));
      }
      return true;
    }
  }
  if (rmdir(path.c_str()) == 0) return true;
  if (errno != EBUSY) {
    Log(entry.service, absl::StrCat("rmdir(", path, "): ", strerror(errno)));
    return true;
  }
  if (entry.cgroup_events) return false;  // still emptying
  // The killed processes are still exiting: removed once it is empty. The
  // watch first, then the rmdir again, so that no change goes unseen.
  absl::StatusOr<UniqueFd> events = sandbox::WatchCgroupEvents(path);
  if (!events.ok()) {
    Log(entry.service, absl::StrCat("cgroup ", path, " is left: ", events.status().message()));
    return true;
  }
  entry.cgroup_events = std::move(*events);
  return rmdir(path.c_str()) == 0;
}

void Reaper::Watch(Entry& entry) {
  Entry* raw = &entry;
  absl::Status watched = loop_.Watch(entry.fd(), [this, raw] {
    if (Progress(*raw)) Forget(raw);
  });
  if (!watched.ok()) {
    Log(entry.service, absl::StrCat("cleaned up later: ", watched.message()));
  }
  entry.watched = watched.ok();
}

void Reaper::Unwatch(Entry& entry) {
  if (entry.watched) loop_.Unwatch(entry.fd());
  entry.watched = false;
}

void Reaper::Forget(Entry* entry) {
  Unwatch(*entry);
  entries_.erase(std::find_if(entries_.begin(), entries_.end(),
                              [&](const std::unique_ptr<Entry>& e) { return e.get() == entry; }));
}

void Reaper::Sweep() {
  std::vector<Entry*> done;
  for (const std::unique_ptr<Entry>& entry : entries_) {
    if (!entry->watched && Progress(*entry)) done.push_back(entry.get());
  }
  for (Entry* entry : done) Forget(entry);
}

void Reaper::WaitAll(absl::Duration deadline) {
  while (!entries_.empty()) {
    std::vector<pollfd> fds;
    for (const std::unique_ptr<Entry>& entry : entries_) fds.push_back({entry->fd(), POLLIN, 0});
    int timeout_ms = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - MonotonicNow())));
    int ready = RetryEintr([&] { return poll(fds.data(), fds.size(), timeout_ms); });
    if (ready <= 0) return;  // the deadline passed (or poll failed)
    std::vector<Entry*> done;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0 && Progress(*entries_[i])) done.push_back(entries_[i].get());
    }
    for (Entry* entry : done) Forget(entry);
  }
}

}  // namespace capbroker::service
