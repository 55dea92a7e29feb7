// A service for the lifecycle tests, run by capbrokerd in its sandbox.
//
//   test_service echo           ready; echoes each datagram of each connection
//   test_service crash-after N  ready; serves one connection, then exits N
//   test_service fail N         exits N at once, never ready
//   test_service never-ready    waits for the broker to go away, never ready
//   test_service plain          does not speak the protocol (readiness exec)
//   test_service acquire NAME   ready; on each connection, asks the broker for
//                               capability NAME as its own principal and
//                               sends the outcome
//   test_service gated NAME     acquires NAME (shared memory) and waits until
//                               its first word is not 0 (a futex the test
//                               wakes), then as echo
//   test_service hang-up-after  ready; serves one connection, then shuts
//                               its broker connection down and waits for
//                               SIGTERM
//   test_service until-sigterm  ready; greets one connection, then waits for
//                               SIGTERM (not for its broker connection to
//                               close) and says "got SIGTERM" on it
//   test_service grants         ready; on each connection, sends the names
//                               of the grants it was started with
//                               ("grants=motd", "grants=" for none)
//   test_service goodbye        ready; waits for SIGTERM, then prints
//                               "test_service: got SIGTERM, goodbye" on
//                               stdout and exits 0
//
// It talks to the test only through connections the broker made, so every
// test waits on an event: a connect answered, a datagram, a hang-up.
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sdk/service/service.h"

namespace capbroker {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "test_service: %s\n", std::string(status.message()).c_str());
  return 70;
}

// Echoes datagrams on `fd` until the peer hangs up.
void Echo(int fd) {
  char buffer[65536];
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) return;
    if (send(fd, buffer, static_cast<size_t>(n), MSG_NOSIGNAL) != n) return;
  }
}

// Waits until the first word of the shared memory capability `name` is not
// 0: the test holds the same memory and opens the gate when it is ready.
absl::Status WaitForGate(Service& service, const std::string& name) {
  absl::StatusOr<Capability> gate = service.broker().Acquire(name);
  if (!gate.ok()) return gate.status();
  void* p = mmap(nullptr, sizeof(uint32_t), PROT_READ, MAP_SHARED, gate->fd.get(), 0);
  if (p == MAP_FAILED) return absl::ErrnoToStatus(errno, "mmap(gate)");
  auto* word = static_cast<std::atomic<uint32_t>*>(p);
  while (word->load() == 0) {
    // Returns at once if the word is no longer 0, else when woken.
    syscall(SYS_futex, p, FUTEX_WAIT, 0, nullptr, nullptr, 0);
  }
  munmap(p, sizeof(uint32_t));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  std::string arg = argc > 2 ? argv[2] : "";
  int code = std::atoi(arg.c_str());
  if (mode == "fail") return code;
  if (mode == "plain") {
    // Whatever the broker passed, held until the broker goes away.
    pause();
    return 0;
  }
  // hang-up-after and until-sigterm wait for SIGTERM with sigwaitinfo.
  // Blocked, it reaches the service, pid 1 of its namespace, which would
  // otherwise ignore it.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  if (mode == "hang-up-after" || mode == "until-sigterm" || mode == "goodbye") {
    if (sigprocmask(SIG_BLOCK, &term, nullptr) != 0) {
      return Fail(absl::ErrnoToStatus(errno, "sigprocmask"));
    }
  }
  // Read before FromEnvironment, which takes the variables away.
  const char* fdnames = getenv("LISTEN_FDNAMES");
  const std::string grants = std::string("grants=") + (fdnames == nullptr ? "" : fdnames);
  absl::StatusOr<Service> service = Service::FromEnvironment();
  if (!service.ok()) return Fail(service.status());
  std::printf("test_service: %s starting\n", mode.c_str());
  std::fflush(stdout);
  if (mode == "never-ready") {
    absl::StatusOr<IncomingConnection> c = service->Accept();
    return 0;  // the broker closed our connection
  }
  if (mode == "gated") {
    if (absl::Status opened = WaitForGate(*service, arg); !opened.ok()) return Fail(opened);
  }
  if (absl::Status ready = service->Ready(); !ready.ok()) return Fail(ready);
  if (mode == "goodbye") {
    // What a service says as it shuts down: the broker has stopped serving
    // when it reads this.
    while (sigwaitinfo(&term, nullptr) < 0 && errno == EINTR) {
    }
    std::printf("test_service: got SIGTERM, goodbye\n");
    std::fflush(stdout);
    return 0;
  }
  for (;;) {
    absl::StatusOr<IncomingConnection> c = service->Accept();
    if (!c.ok()) return 0;  // the broker is gone: exit quietly
    if (mode == "grants") {
      send(c->fd.get(), grants.data(), grants.size(), MSG_NOSIGNAL);
      continue;
    }
    if (mode == "acquire") {
      absl::StatusOr<Capability> cap = service->broker().Acquire(arg);
      std::string outcome = cap.ok() ? "acquired " + cap->name : cap.status().ToString();
      send(c->fd.get(), outcome.data(), outcome.size(), MSG_NOSIGNAL);
      continue;
    }
    // First, who the broker says the client is.
    std::string peer = "principal=" + c->principal + " uid=" + std::to_string(c->uid);
    if (send(c->fd.get(), peer.data(), peer.size(), MSG_NOSIGNAL) < 0) continue;
    if (mode == "until-sigterm") {
      // The broker stops its services with SIGTERM, and SIGKILL after a
      // timeout: the test tells which one ended this by what it reads.
      while (sigwaitinfo(&term, nullptr) < 0 && errno == EINTR) {
      }
      constexpr char kTold[] = "got SIGTERM";
      send(c->fd.get(), kTold, sizeof(kTold) - 1, MSG_NOSIGNAL);
      return 0;
    }
    Echo(c->fd.get());
    if (mode == "crash-after") return code;
    if (mode == "hang-up-after") {
      // Still running, but the broker can no longer reach it. It leaves when
      // told to (SIGTERM, blocked from the start).
      if (shutdown(service->broker().fd(), SHUT_RDWR) != 0) {
        return Fail(absl::ErrnoToStatus(errno, "shutdown"));
      }
      while (sigwaitinfo(&term, nullptr) < 0 && errno == EINTR) {
      }
      return 0;
    }
  }
}

}  // namespace
}  // namespace capbroker

int main(int argc, char** argv) { return capbroker::Main(argc, argv); }
