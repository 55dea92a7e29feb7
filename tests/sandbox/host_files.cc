#include "tests/sandbox/host_files.h"

#include <unistd.h>

#include <fstream>

namespace capbroker::testing {

std::string WritableCgroup2Mount() {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, dir, type, rest;
  while (mounts >> device >> dir >> type && std::getline(mounts, rest)) {
    if (type == "cgroup2" && access(dir.c_str(), W_OK) == 0) return dir;
  }
  return "";
}

}  // namespace capbroker::testing
