// capctl: see capctl.h.
#include <iostream>
#include <string>
#include <vector>

#include "sdk/capctl/capctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return capbroker::RunCapctl(args, std::cout, std::cerr);
}
