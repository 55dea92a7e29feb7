#include "services/journal/record.h"

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "sdk/base/escape.h"
#include "sdk/wire/limits.h"

namespace capbroker::journal {
namespace {

// The length of the UTF-8 sequence at the start of `s`, or 0 if it is not
// a valid one.
size_t Utf8SequenceLength(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto continuation = [&](size_t i) { return i < s.size() && (byte(i) & 0xC0) == 0x80; };
  const unsigned char b = byte(0);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return continuation(1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return 0;
    if (b == 0xE0 && byte(1) < 0xA0) return 0;  // overlong
    if (b == 0xED && byte(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    if (b == 0xF0 && byte(1) < 0x90) return 0;  // overlong
    if (b == 0xF4 && byte(1) >= 0x90) return 0;  // beyond U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

absl::Status CheckRecordText(absl::string_view text) {
  if (text.size() > kMaxRecordTextBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("record of ", text.size(), " bytes; at most ", kMaxRecordTextBytes));
  }
  for (size_t i = 0; i < text.size();) {
    size_t n = Utf8SequenceLength(text.substr(i));
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("record is not valid UTF-8 (at byte ", i, ")"));
    }
    i += n;
  }
  return absl::OkStatus();
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    // Valid UTF-8 that must not reach the log raw (sdk/base/escape.h).
    char32_t escaped = 0;
    if (const size_t n = ActingCharacter(text.substr(i), escaped); n != 0) {
      char form[8];
      std::snprintf(form, sizeof(form), "\\u%04x", static_cast<unsigned>(escaped));
      out += form;
      i += n - 1;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned char>(c));
          out += escaped;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string FormatRecord(uint64_t run, uint64_t seq, absl::Time time, const Peer& peer,
                         absl::string_view text) {
  return absl::StrCat("{\"run\":", run, ",\"seq\":", seq, ",\"time\":\"",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone()),
                      "\",\"principal\":", JsonString(peer.principal), ",\"uid\":", peer.uid,
                      ",\"gid\":", peer.gid, ",\"pid\":", peer.pid,
                      ",\"text\":", JsonString(text), "}\n");
}

size_t MaxRecordLineBytes() {
  const absl::Time last = absl::FromCivil(absl::CivilSecond(9999, 12, 31, 23, 59, 59),
                                          absl::UTCTimeZone()) +
                          absl::Milliseconds(999);
  const Peer widest{std::string(wire::kMaxNameBytes, '\x01'), UINT32_MAX, UINT32_MAX, INT32_MIN};
  return FormatRecord(UINT64_MAX, UINT64_MAX, last, widest,
                      std::string(kMaxRecordTextBytes, '\x01'))
      .size();
}

}  // namespace capbroker::journal
