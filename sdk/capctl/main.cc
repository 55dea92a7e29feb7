// capctl: see capctl.h.
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sdk/base/syscall.h"
#include "sdk/capctl/capctl.h"

int main(int argc, char** argv) {
  if (absl::Status stdio = capbroker::EnsureStandardFds(); !stdio.ok()) {
    std::cerr << "capctl: " << stdio.message() << "\n";
    return capbroker::kExitFailure;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  return capbroker::RunCapctl(args, std::cout, std::cerr);
}
