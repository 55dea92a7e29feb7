#include "sdk/base/kj_status.h"

#include "absl/strings/str_cat.h"

namespace capbroker {

absl::Status KjExceptionToStatus(const kj::Exception& exception,
                                 absl::string_view context) {
  std::string message = absl::StrCat(
      context, ": ",
      absl::string_view(exception.getDescription().cStr(),
                       exception.getDescription().size()));
  switch (exception.getType()) {
    case kj::Exception::Type::DISCONNECTED:
    case kj::Exception::Type::OVERLOADED:
      return absl::UnavailableError(message);
    case kj::Exception::Type::UNIMPLEMENTED:
      return absl::UnimplementedError(message);
    case kj::Exception::Type::FAILED:
      break;
  }
  return absl::InvalidArgumentError(message);
}

}  // namespace capbroker
