// Early-return helpers for absl::Status and absl::StatusOr.
//
// abseil 20220623 has no public equivalents. Usage:
//   CB_RETURN_IF_ERROR(DoThing());
//   CB_ASSIGN_OR_RETURN(UniqueFd fd, OpenThing());
#ifndef CAPBROKER_SDK_BASE_STATUS_MACROS_H_
#define CAPBROKER_SDK_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CB_RETURN_IF_ERROR(expr)                        \
  do {                                                  \
    ::absl::Status cb_status_ = (expr);                 \
    if (!cb_status_.ok()) return cb_status_;            \
  } while (0)

#define CB_STATUS_CONCAT_INNER_(a, b) a##b
#define CB_STATUS_CONCAT_(a, b) CB_STATUS_CONCAT_INNER_(a, b)

#define CB_ASSIGN_OR_RETURN(lhs, expr) \
  CB_ASSIGN_OR_RETURN_IMPL_(CB_STATUS_CONCAT_(cb_statusor_, __LINE__), lhs, expr)

#define CB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CAPBROKER_SDK_BASE_STATUS_MACROS_H_
