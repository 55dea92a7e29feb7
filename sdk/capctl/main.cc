// capctl: see capctl.h.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sdk/base/syscall.h"
#include "sdk/capctl/capctl.h"
#include "sdk/capctl/fd_output.h"

int main(int argc, char** argv) {
  if (absl::Status stdio = capbroker::EnsureStandardFds(); !stdio.ok()) {
    std::cerr << "capctl: " << stdio.message() << "\n";
    return capbroker::kExitFailure;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  // Output goes through FdOutput rather than std::cout, whose stdio buffer
  // loses why a write failed (fd_output.h).
  capbroker::FdOutput stdout_buffer(STDOUT_FILENO);
  std::ostream out(&stdout_buffer);
  const int code = capbroker::RunCapctl(args, out, std::cerr);
  // RunCapctl flushed `out` and checked it. close(2) reports what some
  // file systems only report then (NFS: a failed write-back).
  if (code == capbroker::kExitOk && close(STDOUT_FILENO) != 0) {
    std::cerr << "capctl: write to stdout: " << strerror(errno) << "\n";
    return capbroker::kExitFailure;
  }
  return code;
}
