// Running a piece of a test in a forked child, for code that changes the
// calling process for good (seccomp, Landlock, the fd table).
#ifndef CAPBROKER_TESTS_SANDBOX_IN_CHILD_H_
#define CAPBROKER_TESTS_SANDBOX_IN_CHILD_H_

#include <functional>
#include <string>

namespace capbroker::testing {

struct ChildResult {
  int wait_status = -1;  // as waitpid(2) gives it
  std::string output;    // what `body` returned
};

// Forks; the child runs `body` and sends what it returns back through a
// pipe, then exits 0. The caller must be single-threaded.
ChildResult RunInChild(const std::function<std::string()>& body);

// The same for a body that rearranges the fd table: it gets the pipe's
// write end in `*out_fd`, and leaves there where the pipe ends up.
ChildResult RunInChildWithFd(const std::function<std::string(int* out_fd)>& body);

// "<name>=<errno name>;" when `result` is negative (errno set), else
// "<name>=ok;": one string then compares the outcomes of many calls.
std::string CallOutcome(const char* name, long result);

}  // namespace capbroker::testing

#endif  // CAPBROKER_TESTS_SANDBOX_IN_CHILD_H_
