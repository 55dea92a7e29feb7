// Reading a whole file through an fd a service was handed, without trusting
// what the fd is.
#ifndef CAPBROKER_SDK_SERVICE_READ_FILE_H_
#define CAPBROKER_SDK_SERVICE_READ_FILE_H_

#include <sys/stat.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capbroker {

// kFailedPrecondition naming `what` and the kind of file unless `st`
// describes a regular file ("signatures: a FIFO, not a regular file").
absl::Status RequireRegularFile(const struct stat& st, absl::string_view what);

// The contents of the regular file open for reading at `fd` (borrowed),
// read with pread from offset 0, so the fd's offset does not matter and is
// not moved. kFailedPrecondition when it is not a regular file or not open
// for reading; kResourceExhausted when it holds more than `max_bytes`
// (checked as it is read too: the file may grow meanwhile). `what` names
// the file in messages.
absl::StatusOr<std::string> ReadRegularFile(int fd, size_t max_bytes, absl::string_view what);

}  // namespace capbroker

#endif  // CAPBROKER_SDK_SERVICE_READ_FILE_H_
