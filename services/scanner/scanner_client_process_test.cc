// The scanner_client binary as `capctl connect scanner -- scanner_client
// FILE...` runs it: its connection at fd 3, LISTEN_FDS=1 and LISTEN_PID
// its own pid. The scanner serves in this process, on a thread.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/service/loop_harness.h"
#include "services/scanner/eicar.h"
#include "services/scanner/scanner_handler.h"
#include "tests/fixtures/temp_dir.h"

namespace capbroker::scanner {
namespace {

using ::capbroker::testing::ServingThread;
using ::capbroker::testing::TempDir;

struct Outcome {
  int exit_code = -1;
  std::string out;
};

// Runs scanner_client with `connection` at fd 3, and its stdout a pipe
// read into Outcome::out, or the file `stdout_path`. Everything the child
// does between fork and exec is async-signal-safe: this process has
// threads.
Outcome RunClient(int connection, const std::vector<std::string>& files,
                  const char* stdout_path = nullptr) {
  std::vector<std::string> args = {"services/scanner/scanner_client"};
  args.insert(args.end(), files.begin(), files.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char listen_fds[] = "LISTEN_FDS=1";
  char listen_pid[32] = "LISTEN_PID=";
  char* envp[] = {listen_fds, listen_pid, nullptr};
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    // LISTEN_PID=<own pid>, without snprintf.
    char digits[16];
    int n = 0;
    for (pid_t p = getpid(); p > 0; p /= 10) digits[n++] = static_cast<char>('0' + p % 10);
    char* end = listen_pid + strlen("LISTEN_PID=");
    while (n > 0) *end++ = digits[--n];
    *end = '\0';
    const int stdout_fd =
        stdout_path == nullptr ? out[1] : open(stdout_path, O_WRONLY | O_CLOEXEC);
    if (stdout_fd < 0 || dup2(stdout_fd, 1) != 1 || dup2(connection, 3) != 3) _exit(127);
    execve(argv[0], argv.data(), envp);
    _exit(127);
  }
  close(out[1]);
  Outcome outcome;
  char buf[256];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;) outcome.out.append(buf, n);
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

TEST(ScannerClientProcessTest, ScansThroughTheInheritedConnection) {
  TempDir dir;
  ScannerHandler handler(Scanner({{"Eicar-Test-Signature", testing::Eicar()}}));
  std::unique_ptr<ServingThread> serving;
  ASSERT_OK_AND_ASSIGN(serving, ServingThread::Start(handler, ScannerHandler::LoopOptions()));
  std::string clean = dir.WriteFile("clean", "hello");
  std::string bad = dir.WriteFile("bad", testing::Eicar());
  {
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
    Outcome o = RunClient(connection.get(), {clean});
    EXPECT_EQ(o.exit_code, 0);
    EXPECT_EQ(o.out, clean + ": clean\n");
  }
  {
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
    Outcome o = RunClient(connection.get(), {clean, bad});
    EXPECT_EQ(o.exit_code, 1);
    EXPECT_EQ(o.out, clean + ": clean\n" + bad + ": infected (Eicar-Test-Signature)\n");
  }
  {
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
    Outcome o = RunClient(connection.get(), {dir.path()});
    EXPECT_EQ(o.exit_code, 2);
  }
  {
    // std::cout's writes fail (ENOSPC) only when it is flushed: a clean
    // verdict that never reached stdout is no clean run.
    ASSERT_OK_AND_ASSIGN(UniqueFd connection, serving->Connect());
    Outcome o = RunClient(connection.get(), {clean}, "/dev/full");
    EXPECT_EQ(o.exit_code, 2);
  }
}

}  // namespace
}  // namespace capbroker::scanner
