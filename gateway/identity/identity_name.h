// Which principal and group names the gateway accepts from a token: printable UTF-8, bounded.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace pgward::identity {

// Principal and group names travel into log lines, audit rows, Postgres settings
// (pgward.principal, application_name) and grant lookups. A name that could forge a log line,
// reorder text on screen, or carry bytes that are not text is refused where it enters, at
// token verification, rather than escaped in each of those places.
inline constexpr size_t kMaxIdentityNameBytes = 1024;

// OK, or INVALID_ARGUMENT saying what is wrong (never echoing the name): empty, longer than
// kMaxIdentityNameBytes, not well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), a control character (C0, DEL, C1), a line or paragraph separator
// (U+2028, U+2029), or a bidirectional formatting character (U+061C, U+200E, U+200F,
// U+202A..U+202E, U+2066..U+2069; "Trojan Source", CVE-2021-42574).
absl::Status CheckIdentityName(std::string_view name);

}  // namespace pgward::identity
