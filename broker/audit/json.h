// Minimal JSON output helpers for the audit log.
#ifndef CAPBROKER_BROKER_AUDIT_JSON_H_
#define CAPBROKER_BROKER_AUDIT_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace capbroker::audit {

// Appends `text` to `out` as a quoted JSON string. Control characters,
// quotes and backslashes are escaped; bytes that are not valid UTF-8 (a path
// or an executable name can hold any byte) become \u00XX, so the line stays
// valid JSON and the byte value stays readable.
void AppendJsonString(absl::string_view text, std::string& out);

}  // namespace capbroker::audit

#endif  // CAPBROKER_BROKER_AUDIT_JSON_H_
