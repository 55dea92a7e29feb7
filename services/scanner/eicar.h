// The EICAR anti-virus test file, for tests (test only). Built at run time
// so that no source file contains it.
#ifndef CAPBROKER_SERVICES_SCANNER_EICAR_H_
#define CAPBROKER_SERVICES_SCANNER_EICAR_H_

#include <string>

namespace capbroker::scanner::testing {

// The 68 bytes of the EICAR test file.
std::string Eicar();

// signatures.txt's line for it.
std::string EicarSignatureLine();

}  // namespace capbroker::scanner::testing

#endif  // CAPBROKER_SERVICES_SCANNER_EICAR_H_
