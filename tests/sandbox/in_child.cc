#include "tests/sandbox/in_child.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace capbroker::testing {

std::string CallOutcome(const char* name, long result) {
  return std::string(name) + "=" + (result < 0 ? strerrorname_np(errno) : "ok") + ";";
}

ChildResult RunInChild(const std::function<std::string()>& body) {
  return RunInChildWithFd([&](int*) { return body(); });
}

ChildResult RunInChildWithFd(const std::function<std::string(int* out_fd)>& body) {
  ChildResult result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) abort();
  pid_t pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    close(fds[0]);
    int out_fd = fds[1];
    std::string out = body(&out_fd);
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = write(out_fd, out.data() + done, out.size() - done);
      if (n <= 0) _exit(3);
      done += n;
    }
    _exit(0);
  }
  close(fds[1]);
  char buffer[4096];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof buffer)) > 0) result.output.append(buffer, n);
  close(fds[0]);
  waitpid(pid, &result.wait_status, 0);
  return result;
}

}  // namespace capbroker::testing
