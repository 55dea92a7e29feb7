#include "tests/sandbox/host_files.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace capbroker::testing {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string WritableCgroup2Mount() {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, dir, type, rest;
  while (mounts >> device >> dir >> type && std::getline(mounts, rest)) {
    if (type == "cgroup2" && access(dir.c_str(), W_OK) == 0) return dir;
  }
  return "";
}

}  // namespace capbroker::testing
