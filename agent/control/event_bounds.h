// Size bounds for the strings in agent events: every field the gateway stores is cut here,
// at a UTF-8 character boundary, and marked, so no statement or error can bloat the audit.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

inline constexpr size_t kMaxEventStatementBytes = 16 * 1024;
inline constexpr size_t kMaxEventErrorBytes = 4 * 1024;
inline constexpr size_t kMaxEventOtherBytes = 256;
// Appended to a cut string; counted within the bound, so cutting twice changes nothing.
inline constexpr std::string_view kTruncationMarker = "\xe2\x80\xa6[truncated]";  // "…[truncated]"

// `text` if it fits in `max_bytes`, else its longest prefix that ends on a UTF-8 character
// boundary and leaves room for the marker, followed by the marker. Bytes that are not UTF-8
// are treated as whole characters of one byte. `max_bytes` below the marker's size gives a
// plain cut at a character boundary.
std::string BoundUtf8(std::string_view text, size_t max_bytes);

// Applies the bounds to every string field: statement 16 KiB, error 4 KiB, the rest 256 B.
void BoundEvent(pgward::v1::AgentEvent& event);

}  // namespace pgward::agent
