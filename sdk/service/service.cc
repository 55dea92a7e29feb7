#include "sdk/service/service.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <climits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "sdk/base/decimal.h"
#include "sdk/base/shown_text.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/service/process_controls.h"

namespace capbroker {
namespace {

// SD_LISTEN_FDS_START.
constexpr int kFirstFd = 3;
// More than the broker ever passes (its limit is 128 grants).
constexpr int kMaxGrants = 1024;

// An environment variable's number, from `low` to `high` (int: fds, pids).
absl::StatusOr<int> ParseNumber(const char* name, const char* value, int low, int high) {
  CB_ASSIGN_OR_RETURN(uint64_t n, ParseDecimal(name, value, low, high));
  return static_cast<int>(n);
}

}  // namespace

absl::StatusOr<ServiceLayout> ParseServiceLayout(const char* listen_fds,
                                                 const char* listen_pid,
                                                 const char* listen_fdnames,
                                                 const char* broker_fd, pid_t pid) {
  ServiceLayout layout;
  if (broker_fd == nullptr) {
    return absl::InvalidArgumentError(
        "CAPBROKER_FD is not set: this program must be started by capbrokerd as a service");
  }
  int count = 0;
  if (listen_fds != nullptr) {
    CB_ASSIGN_OR_RETURN(count, ParseNumber("LISTEN_FDS", listen_fds, 0, kMaxGrants));
    if (listen_pid == nullptr) {
      return absl::InvalidArgumentError("LISTEN_FDS is set but LISTEN_PID is not");
    }
    CB_ASSIGN_OR_RETURN(int owner, ParseNumber("LISTEN_PID", listen_pid, 1, INT_MAX));
    if (owner != pid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LISTEN_PID=", owner, " is another process's (this is ", pid,
          "): the fds were not meant for this program"));
    }
  }
  std::vector<std::string> names;
  if (count > 0) {
    names = absl::StrSplit(listen_fdnames == nullptr ? "" : listen_fdnames, ':');
    if (static_cast<int>(names.size()) != count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LISTEN_FDNAMES names ", names.size(), " fds but LISTEN_FDS says ", count));
    }
  }
  CB_ASSIGN_OR_RETURN(layout.broker_fd,
                      ParseNumber("CAPBROKER_FD", broker_fd, kFirstFd + count, INT_MAX));
  for (int i = 0; i < count; ++i) layout.grants.emplace_back(names[i], kFirstFd + i);
  return layout;
}

absl::StatusOr<Service> Service::FromEnvironment() {
  // Before anything of a client's can reach this process's memory: the
  // service's processes (a ForkingServer's workers, another instance) run
  // as one uid, and a dumpable one's /proc/PID/mem is open to any of them
  // (no ptrace needed). Not dumpable, it is open to none; this also turns
  // core dumps off. Fail closed: a service that cannot is not started.
  CB_RETURN_IF_ERROR(MakeNotDumpable());
  // A service serves many clients: one client's request that writes past
  // RLIMIT_FSIZE must fail with EFBIG, not kill the service for all
  // (SIGXFSZ's default action). Ignored stays ignored across fork and exec.
  if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR) return ErrnoStatus(errno, "signal(SIGXFSZ, SIG_IGN)");
  CB_ASSIGN_OR_RETURN(
      ServiceLayout layout,
      ParseServiceLayout(getenv("LISTEN_FDS"), getenv("LISTEN_PID"),
                         getenv("LISTEN_FDNAMES"), getenv("CAPBROKER_FD"), getpid()));
  for (const char* name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "CAPBROKER_FD"}) {
    unsetenv(name);
  }
  // Each fd is checked open and made close-on-exec before it is owned, so
  // a bad layout never leads to closing an fd this process did not get.
  std::vector<int> all;
  for (const auto& [name, fd] : layout.grants) all.push_back(fd);
  all.push_back(layout.broker_fd);
  for (int fd : all) {
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fcntl(fd=", fd, ", F_SETFD): the broker "
                                                          "passed fewer fds than announced"));
    }
  }
  std::vector<std::pair<std::string, UniqueFd>> grants;
  for (const auto& [name, fd] : layout.grants) grants.emplace_back(name, UniqueFd(fd));
  CB_ASSIGN_OR_RETURN(Client broker, Client::FromFd(UniqueFd(layout.broker_fd)));
  return Service(std::move(broker), std::move(grants));
}

Service::Service(Service&& other) noexcept
    : broker_(std::move(other.broker_)),
      grants_(std::move(other.grants_)),
      moved_from_(other.moved_from_) {
  other.grants_.clear();
  other.moved_from_ = true;
}

Service& Service::operator=(Service&& other) noexcept {
  if (this == &other) return *this;
  broker_ = std::move(other.broker_);
  grants_ = std::move(other.grants_);  // closes the grants this held
  moved_from_ = other.moved_from_;
  other.grants_.clear();
  other.moved_from_ = true;
  return *this;
}

absl::Status Service::CheckNotMovedFrom() const {
  if (!moved_from_) return absl::OkStatus();
  return absl::UnavailableError("this Service was moved from");
}

absl::Status Service::Ready() {
  CB_RETURN_IF_ERROR(CheckNotMovedFrom());
  return broker_.Ready();
}

absl::StatusOr<IncomingConnection> Service::Accept() {
  CB_RETURN_IF_ERROR(CheckNotMovedFrom());
  return broker_.NextIncoming();
}

absl::StatusOr<UniqueFd> Service::TakeGrant(absl::string_view name) {
  CB_RETURN_IF_ERROR(CheckNotMovedFrom());
  std::vector<std::string> left;
  for (auto& [grant_name, fd] : grants_) {
    if (grant_name == name && fd.valid()) return std::move(fd);
    if (fd.valid()) left.push_back(Shown(grant_name));
  }
  // `name` may come from the service's command (--grant=NAME), which may
  // hold anything; the message reaches the broker's log.
  return absl::NotFoundError(absl::StrCat(
      "no grant named '", Shown(name), "'; this service holds: ",
      left.empty() ? "(none)" : absl::StrJoin(left, ", ")));
}

}  // namespace capbroker
