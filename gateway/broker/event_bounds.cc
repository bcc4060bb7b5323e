// Bounds on agent event fields: see event_bounds.h.
#include "gateway/broker/event_bounds.h"

#include "absl/strings/str_cat.h"

namespace pgward::gateway {
namespace {

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

}  // namespace

bool TruncateUtf8(std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return false;
  // The mark's own length depends on N's digits; the longest N (20 digits) is assumed so the
  // result never exceeds the bound.
  constexpr size_t kMarkBytes = sizeof("\xe2\x80\xa6[truncated  bytes]") - 1 + 20;
  size_t keep = max_bytes > kMarkBytes ? max_bytes - kMarkBytes : 0;
  // Back up to the first byte of a UTF-8 sequence (RFC 3629 section 3), so the kept prefix
  // ends on a character boundary.
  while (keep > 0 && IsUtf8Continuation(text[keep])) --keep;
  const size_t removed = text.size() - keep;
  text.resize(keep);
  absl::StrAppend(&text, "\xe2\x80\xa6[truncated ", removed, " bytes]");
  text.shrink_to_fit();  // a 5 MB field must not keep its 5 MB while it waits in the queue
  return true;
}

bool BoundStatementEvent(pgward::v1::StatementEvent& e) {
  bool cut = false;
  cut |= TruncateUtf8(*e.mutable_session_id(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_protocol(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_statement(), kMaxStatementBytes);
  cut |= TruncateUtf8(*e.mutable_fingerprint(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_command_tag(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_sqlstate(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_error(), kMaxErrorBytes);
  cut |= TruncateUtf8(*e.mutable_decision(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_rule(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_reviewer(), kMaxShortFieldBytes);
  // Three values, whatever an agent sends; anything else (older agents send none) is cleared,
  // and the store derives it from the sqlstate.
  if (e.outcome() != "ok" && e.outcome() != "error" && e.outcome() != "unknown") e.clear_outcome();
  return cut;
}

bool BoundSessionEnded(pgward::v1::SessionEnded& e) {
  bool cut = false;
  cut |= TruncateUtf8(*e.mutable_session_id(), kMaxShortFieldBytes);
  cut |= TruncateUtf8(*e.mutable_reason(), kMaxShortFieldBytes);
  return cut;
}

}  // namespace pgward::gateway
