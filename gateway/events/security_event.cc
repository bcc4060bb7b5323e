// The events of a verified Security Event Token (RFC 8417) that pgward acts on.
#include "gateway/events/security_event.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace pgward::events {
namespace {

using Json = nlohmann::json;

std::optional<int64_t> Seconds(const Json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(), INT64_MAX));
  if (value.is_number_float() && std::isfinite(value.get<double>())) {
    return static_cast<int64_t>(std::floor(std::clamp(value.get<double>(), -9e15, 9e15)));
  }
  return std::nullopt;
}

const std::string* StringField(const Json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

bool Revoking(const std::string& type) {
  return type == kCaepSessionRevoked || type == kCaepCredentialChange || type == kRiscAccountDisabled;
}

// Fills subject_issuer/subject from a subject identifier (RFC 9493), or says why it cannot.
void ReadSubject(const Json* id, const std::string& set_issuer, SubjectEvent& event) {
  if (id == nullptr || !id->is_object()) {
    event.ignored_because = "no subject";
    return;
  }
  const std::string* format = StringField(*id, "format");
  if (format == nullptr) format = StringField(*id, "subject_type");  // pre-RFC 9493 transmitters
  if (format == nullptr || *format != "iss_sub") {
    event.ignored_because = "subject format is not iss_sub";
    return;
  }
  const std::string* iss = StringField(*id, "iss");
  const std::string* sub = StringField(*id, "sub");
  if (iss == nullptr || sub == nullptr || sub->empty()) {
    event.ignored_because = "iss_sub subject without iss or sub";
    return;
  }
  if (sub->size() > 1024 || ForLog(*sub) != *sub) {
    event.ignored_because = "subject is not a plain printable name";
    return;
  }
  // A transmitter speaks for its own subjects only: one issuer's keys must not end the
  // sessions of another issuer's principals.
  if (*iss != set_issuer) {
    event.ignored_because = "subject of another issuer";
    return;
  }
  event.subject_issuer = *iss;
  event.subject = *sub;
}

}  // namespace

std::string EventName(std::string_view type) {
  if (type == kCaepSessionRevoked) return "CAEP session-revoked";
  if (type == kCaepCredentialChange) return "CAEP credential-change";
  if (type == kRiscAccountDisabled) return "RISC account-disabled";
  return ForLog(type);
}

std::string ForLog(std::string_view text) {
  std::string out(text.substr(0, 200));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

absl::StatusOr<SecurityEventSet> ParseSecurityEventSet(std::string_view payload_json, const std::string& set_issuer,
                                                       int64_t now_unix) {
  Json claims = Json::parse(payload_json, nullptr, /*allow_exceptions=*/false);
  if (claims.is_discarded() || !claims.is_object()) return absl::InvalidArgumentError("claims are not a JSON object");
  SecurityEventSet set;
  // RFC 8417 2.2: jti, iat and events are required.
  const std::string* jti = StringField(claims, "jti");
  if (jti == nullptr || jti->empty()) return absl::InvalidArgumentError("SET without jti");
  set.jti = *jti;
  auto iat_it = claims.find("iat");
  std::optional<int64_t> iat = iat_it == claims.end() ? std::nullopt : Seconds(*iat_it);
  if (!iat) return absl::InvalidArgumentError("SET without iat");
  set.issued_unix = *iat;
  auto events_it = claims.find("events");
  if (events_it == claims.end() || !events_it->is_object() || events_it->empty()) {
    return absl::InvalidArgumentError("SET without events");
  }
  auto top_subject = claims.find("sub_id");
  for (const auto& [type, payload] : events_it->items()) {
    if (!payload.is_object()) return absl::InvalidArgumentError("an event's payload is not a JSON object");
    SubjectEvent event;
    event.type = type;
    if (!Revoking(type)) {
      event.ignored_because = "event type not acted on";
      set.events.push_back(std::move(event));
      continue;
    }
    auto subject = payload.find("subject");
    ReadSubject(top_subject != claims.end() ? &*top_subject : subject != payload.end() ? &*subject : nullptr,
                set_issuer, event);
    // CAEP 1.0 3: event_timestamp is when the event happened; without it, when the SET was
    // made. Never later than now: a future time would refuse tokens issued after the event.
    auto when_it = payload.find("event_timestamp");
    std::optional<int64_t> when = when_it == payload.end() ? std::nullopt : Seconds(*when_it);
    event.event_unix = std::min(when.value_or(set.issued_unix), now_unix);
    event.revokes = event.ignored_because.empty();
    set.events.push_back(std::move(event));
  }
  return set;
}

}  // namespace pgward::events
