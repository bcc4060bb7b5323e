// The events of a verified Security Event Token (RFC 8417) that pgward acts on: the OpenID
// Shared Signals profiles' CAEP session-revoked and credential-change, RISC account-disabled.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pgward::events {

inline constexpr char kCaepSessionRevoked[] = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
inline constexpr char kCaepCredentialChange[] =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
inline constexpr char kRiscAccountDisabled[] =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

// One event of the SET. `revokes` events bar the subject's tokens issued before `event_unix`.
struct SubjectEvent {
  std::string type;            // the event type URI
  bool revokes = false;        // one of the three above, about a subject pgward can name
  std::string subject_issuer;  // iss_sub subject (RFC 9493 3.2.7): the subject's issuer...
  std::string subject;         // ... and its "sub"
  int64_t event_unix = 0;      // CAEP event_timestamp, else the SET's iat, never after `now`
  std::string ignored_because; // set when !revokes: why pgward does nothing with it
};

struct SecurityEventSet {
  std::string jti;
  int64_t issued_unix = 0;
  std::vector<SubjectEvent> events;
};

// Parses the claims of a SET that VerifySecurityEvent accepted. The subject is the SSF 1.0
// top-level "sub_id" or, as CAEP 1.0 and older transmitters send it, the event's "subject".
// kInvalidArgument when it is not a SET (no "events" object, no jti or iat, an event that is
// not an object). An event about a subject of another issuer than the SET's, or in a subject
// format other than iss_sub, is kept with revokes == false and the reason.
// "CAEP session-revoked" and the like, for log lines and the caller's 57P01 message.
std::string EventName(std::string_view type);

// `text` (from a signed but foreign document) made safe for one log line: at most 200 bytes,
// anything but printable ASCII shown as '?'.
std::string ForLog(std::string_view text);

absl::StatusOr<SecurityEventSet> ParseSecurityEventSet(std::string_view payload_json, const std::string& set_issuer,
                                                       int64_t now_unix);

}  // namespace pgward::events
