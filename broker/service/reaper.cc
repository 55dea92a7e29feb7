#include "broker/service/reaper.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
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
    if (entry->watched) loop_.Unwatch(entry->child.pidfd.get());
    Log(entry->service, absl::StrCat("pid ", entry->child.pid,
                                     " was killed but has not died: left unreaped"));
  }
}

void Reaper::Add(absl::string_view service, sandbox::AbandonedChild child) {
  if (!child.pidfd.valid()) return;
  if (syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0) != 0 &&
      errno != ESRCH) {
    Log(service, absl::StrCat("pidfd_send_signal(pid ", child.pid, ", SIGKILL): ",
                              strerror(errno)));
  }
  auto entry = std::make_unique<Entry>();
  entry->service = std::string(service);
  entry->child = std::move(child);
  Entry* raw = entry.get();
  absl::Status watched = loop_.Watch(raw->child.pidfd.get(), [this, raw] {
    if (TryReap(*raw)) Forget(raw);
  });
  if (!watched.ok()) {
    Log(service, absl::StrCat("pid ", raw->child.pid, " is reaped later: ", watched.message()));
  }
  raw->watched = watched.ok();
  entries_.push_back(std::move(entry));
  Sweep();
}

bool Reaper::TryReap(Entry& entry) {
  siginfo_t info{};
  if (RetryEintr([&] {
        return waitid(static_cast<idtype_t>(P_PIDFD), entry.child.pidfd.get(), &info,
                      WEXITED | WNOHANG);
      }) != 0) {
    Log(entry.service, absl::StrCat("waitid(pid ", entry.child.pid, "): ", strerror(errno),
                                    "; forgetting it"));
  } else if (info.si_pid == 0) {
    return false;
  } else {
    Log(entry.service, absl::StrCat("pid ", entry.child.pid, ", given up on, ended (",
                                    sandbox::DescribeExit(info), ")"));
  }
  // Reaped: its cgroup is empty now.
  const std::string& cgroup = entry.child.cgroup;
  if (!cgroup.empty() && rmdir(cgroup.c_str()) != 0) {
    Log(entry.service, absl::StrCat("rmdir(", cgroup, "): ", strerror(errno)));
  }
  return true;
}

void Reaper::Forget(Entry* entry) {
  if (entry->watched) loop_.Unwatch(entry->child.pidfd.get());
  entries_.erase(std::find_if(entries_.begin(), entries_.end(),
                              [&](const std::unique_ptr<Entry>& e) { return e.get() == entry; }));
}

void Reaper::Sweep() {
  std::vector<Entry*> done;
  for (const std::unique_ptr<Entry>& entry : entries_) {
    if (!entry->watched && TryReap(*entry)) done.push_back(entry.get());
  }
  for (Entry* entry : done) Forget(entry);
}

void Reaper::WaitAll(absl::Time deadline) {
  while (!entries_.empty()) {
    std::vector<pollfd> fds;
    for (const std::unique_ptr<Entry>& entry : entries_) {
      fds.push_back({entry->child.pidfd.get(), POLLIN, 0});
    }
    int timeout_ms = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    int ready = RetryEintr([&] { return poll(fds.data(), fds.size(), timeout_ms); });
    if (ready <= 0) return;  // the deadline passed (or poll failed)
    std::vector<Entry*> done;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0 && TryReap(*entries_[i])) done.push_back(entries_[i].get());
    }
    for (Entry* entry : done) Forget(entry);
  }
}

}  // namespace capbroker::service
