// run_sandboxed: runs a program through a launch and copies its output, for
// trying the sandbox by hand and timing it. Test-only.
//   run_sandboxed [--uid=N] [--gid=N] [--repeat=N] -- /path/to/program args...
#include <poll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "broker/sandbox/sandbox.h"
#include "tests/sandbox/launched_run.h"

namespace {

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  capbroker::sandbox::SandboxSpec spec;
  spec.name = "run-sandboxed";
  spec.uid = getuid();
  spec.gid = getgid();
  int repeat = 1;
  int i = 1;
  for (; i < argc; ++i) {
    if (std::strncmp(argv[i], "--uid=", 6) == 0) spec.uid = std::atoi(argv[i] + 6);
    else if (std::strncmp(argv[i], "--gid=", 6) == 0) spec.gid = std::atoi(argv[i] + 6);
    else if (std::strncmp(argv[i], "--repeat=", 9) == 0) repeat = std::atoi(argv[i] + 9);
    else if (std::strcmp(argv[i], "--") == 0) { ++i; break; }
    else { std::fprintf(stderr, "unknown flag %s\n", argv[i]); return 2; }
  }
  for (; i < argc; ++i) spec.argv.push_back(argv[i]);
  spec.env = {"PATH=/usr/bin:/bin"};
  int last = 0;
  double total = 0;
  double launch_total = 0;
  for (int r = 0; r < repeat; ++r) {
    double start = NowMs();
    auto launched = capbroker::testing::LaunchAndWait(spec);
    launch_total += NowMs() - start;
    if (!launched.ok()) {
      std::fprintf(stderr, "launch failed: %s\n", launched.status().ToString().c_str());
      return 1;
    }
    std::string out;
    char buffer[4096];
    while (true) {
      pollfd p{launched->output.get(), POLLIN, 0};
      poll(&p, 1, -1);
      ssize_t n = read(launched->output.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      out.append(buffer, n);
    }
    int status = 0;
    waitpid(launched->pid, &status, 0);
    total += NowMs() - start;
    if (r == repeat - 1) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fprintf(stderr, "in force:");
      for (const auto& t : launched->in_force) std::fprintf(stderr, " %s", t.c_str());
      std::fprintf(stderr, "\n");
      for (const auto& m : launched->missing) std::fprintf(stderr, "missing: %s\n", m.c_str());
      last = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
  std::fprintf(stderr, "%.3f ms per launch, %.3f ms per launch-and-exit (%d runs)\n",
               launch_total / repeat, total / repeat, repeat);
  return last;
}
