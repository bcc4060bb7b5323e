// The gateway's RFC 8935 push endpoint: POST /ssf/events with a Security Event Token.
#include "gateway/events/security_event_receiver.h"

#include <ctime>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace pgward::events {
namespace {

// RFC 8935 2.2: the SET is the whole body, of this media type (parameters allowed).
bool IsSecurityEventMediaType(std::string_view content_type) {
  absl::string_view type = AbslView(content_type.substr(0, content_type.find(';')));
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(type), "application/secevent+jwt");
}

// RFC 8935 2.3 / 7.1: the error code a transmitter is sent for a refused SET.
const char* ErrorCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound: return "invalid_issuer";
    case absl::StatusCode::kUnauthenticated: return "invalid_key";
    case absl::StatusCode::kPermissionDenied: return "invalid_audience";
    default: return "invalid_request";
  }
}

}  // namespace

SecurityEventReceiver::SecurityEventReceiver(Verify verify, Revoke revoke, std::function<int64_t()> now_unix)
    : verify_(std::move(verify)),
      revoke_(std::move(revoke)),
      now_unix_(now_unix ? std::move(now_unix) : [] { return static_cast<int64_t>(std::time(nullptr)); }) {}

std::string SecurityEventReceiver::Refuse(const char* err, std::string_view description, std::string_view peer,
                                          bool keep_alive) {
  Log(LogLevel::kWarn, "events", "refused a security event token from ", peer, ": ", err, " (", description, ")");
  nlohmann::json body = {{"err", err}, {"description", std::string(description)}};
  return HttpResponse(400, "application/json", body.dump(), keep_alive);
}

std::string SecurityEventReceiver::Handle(const HttpRequest& request, std::string_view peer) {
  const bool keep_alive = request.KeepAlive();
  std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
  if (path != kEventsPath) return HttpResponse(404, "text/plain", "not found\n", keep_alive);
  if (request.method != "POST") {
    return HttpResponse(405, "text/plain", "POST a security event token\n", keep_alive, "Allow: POST\r\n");
  }
  if (!IsSecurityEventMediaType(request.Header("content-type"))) {
    return HttpResponse(415, "text/plain", "Content-Type must be application/secevent+jwt\n", keep_alive);
  }
  const absl::string_view trimmed = absl::StripAsciiWhitespace(request.body);
  const std::string_view token(trimmed.data(), trimmed.size());
  absl::StatusOr<identity::VerifiedSecurityEvent> verified = verify_(token);
  if (!verified.ok()) {
    // The issuer's keys could not be fetched: not the SET's fault; the transmitter retries.
    if (absl::IsUnavailable(verified.status())) {
      Log(LogLevel::kWarn, "events", "could not verify a security event token from ", peer, ": ",
          verified.status().message());
      return HttpResponse(503, "text/plain", "the issuer's keys are unavailable; try again later\n", keep_alive,
                          "Retry-After: 30\r\n");
    }
    return Refuse(ErrorCodeFor(verified.status()), std::string(verified.status().message()), peer, keep_alive);
  }
  absl::StatusOr<SecurityEventSet> set = ParseSecurityEventSet(verified->payload_json, verified->issuer, now_unix_());
  if (!set.ok()) return Refuse("invalid_request", std::string(set.status().message()), peer, keep_alive);

  for (const SubjectEvent& event : set->events) {
    if (!event.revokes) {
      // RFC 8935 2.2: a recipient acknowledges events it does not act on.
      Log(LogLevel::kInfo, "events", "security event ", ForLog(set->jti), " from ", verified->issuer, " (",
          ForLog(event.type), ") acknowledged and ignored: ", event.ignored_because);
      continue;
    }
    absl::StatusOr<uint32_t> ended = revoke_(event);
    if (!ended.ok()) {
      Log(LogLevel::kError, "events", "security event ", ForLog(set->jti), " (", event.type, ") for subject ",
          event.subject,
          " of ", event.subject_issuer, " could not take effect: ", ended.status().message());
      return HttpResponse(503, "text/plain", "the event could not be recorded; try again later\n", keep_alive,
                          "Retry-After: 5\r\n");
    }
    Log(LogLevel::kInfo, "events", "security event ", ForLog(set->jti), " from ", verified->issuer, ": ", event.type,
        " for subject ", event.subject, "; its tokens issued before ", event.event_unix, " are refused, ", *ended,
        " live session(s) ended");
  }
  return HttpResponse(202, "", "", keep_alive);
}

}  // namespace pgward::events
