// Cuts agent event strings to their bounds at UTF-8 character boundaries (see event_bounds.h).
#include "agent/control/event_bounds.h"

namespace pgward::agent {
namespace {

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// The largest cut <= `limit` that does not split a multibyte character: back up over
// continuation bytes (at most three: RFC 3629 sequences are four bytes long at most).
size_t CharacterBoundary(std::string_view text, size_t limit) {
  size_t cut = limit;
  for (int i = 0; i < 3 && cut > 0 && cut < text.size() && IsContinuationByte(text[cut]); ++i) --cut;
  if (cut < text.size() && IsContinuationByte(text[cut])) return limit;  // not UTF-8 here: byte cut
  return cut;
}

void Bound(std::string* field, size_t max_bytes) {
  if (field->size() > max_bytes) *field = BoundUtf8(*field, max_bytes);
}

}  // namespace

std::string BoundUtf8(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  if (max_bytes < kTruncationMarker.size()) {
    return std::string(text.substr(0, CharacterBoundary(text, max_bytes)));
  }
  const size_t cut = CharacterBoundary(text, max_bytes - kTruncationMarker.size());
  std::string out(text.substr(0, cut));
  out.append(kTruncationMarker);
  return out;
}

void BoundEvent(pgward::v1::AgentEvent& event) {
  if (event.has_statement()) {
    pgward::v1::StatementEvent& s = *event.mutable_statement();
    Bound(s.mutable_statement(), kMaxEventStatementBytes);
    Bound(s.mutable_error(), kMaxEventErrorBytes);
    for (std::string* field : {s.mutable_session_id(), s.mutable_protocol(), s.mutable_fingerprint(),
                               s.mutable_command_tag(), s.mutable_sqlstate(), s.mutable_decision(),
                               s.mutable_rule(), s.mutable_reviewer()}) {
      Bound(field, kMaxEventOtherBytes);
    }
  }
  if (event.has_session_ended()) {
    pgward::v1::SessionEnded& e = *event.mutable_session_ended();
    Bound(e.mutable_session_id(), kMaxEventOtherBytes);
    Bound(e.mutable_reason(), kMaxEventOtherBytes);
  }
}

}  // namespace pgward::agent
