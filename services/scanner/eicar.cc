#include "services/scanner/eicar.h"

namespace capbroker::scanner::testing {
namespace {

constexpr char kHex[] =
    "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d"
    "414e544956495255532d544553542d46494c452124482b482a";

}  // namespace

std::string Eicar() {
  std::string bytes;
  for (size_t i = 0; kHex[i] != '\0'; i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(std::string(kHex + i, 2), nullptr, 16)));
  }
  return bytes;
}

std::string EicarSignatureLine() { return std::string("Eicar-Test-Signature:") + kHex; }

}  // namespace capbroker::scanner::testing
