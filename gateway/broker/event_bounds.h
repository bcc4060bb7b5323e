// Upper bounds on what one agent event may store: every text field is cut to a fixed size.
#pragma once

#include <cstddef>
#include <string>

#include "pgward/v1/agent.pb.h"

namespace pgward::gateway {

// The agent bounds these fields too; the gateway does it again because it trusts no agent to
// (ARCHITECTURE.md section 1: everything that crosses a trust boundary is bounded). The sizes
// keep one audit row under about 22 KiB, so AdminService pages of rows stay small.
inline constexpr size_t kMaxStatementBytes = 16 * 1024;
inline constexpr size_t kMaxErrorBytes = 4 * 1024;
inline constexpr size_t kMaxShortFieldBytes = 256;  // ids, tags, SQLSTATE, decision, rule, ...

// Cuts `text` to at most `max_bytes` bytes, never inside a UTF-8 sequence, and marks the cut
// with "…[truncated N bytes]" (N: the bytes removed from the original) inside that bound.
// Returns true if it cut. `max_bytes` should leave room for the mark (41 bytes); a smaller bound keeps only the mark.
bool TruncateUtf8(std::string& text, size_t max_bytes);

// Bounds every string field of the event; true if any was cut.
bool BoundStatementEvent(pgward::v1::StatementEvent& event);
bool BoundSessionEnded(pgward::v1::SessionEnded& event);

}  // namespace pgward::gateway
