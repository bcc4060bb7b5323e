// SET parsing and the push endpoint's answers (RFC 8417, RFC 8935, CAEP, RISC), with the
// verifier and the effect replaced by fakes: what the receiver does with each kind of push.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "gateway/events/http_request.h"
#include "gateway/events/security_event.h"
#include "gateway/events/security_event_receiver.h"

namespace pgward::events {
namespace {

using nlohmann::json;

constexpr char kIss[] = "https://idp.example.test";
constexpr int64_t kNow = 1'800'000'000;

json Set(const std::string& type, json event, json extra = json::object()) {
  json set = {{"iss", kIss}, {"jti", "set-1"}, {"iat", kNow - 5}, {"aud", "pgward"}, {"events", {{type, event}}}};
  for (auto& [k, v] : extra.items()) set[k] = v;
  return set;
}

json IssSub(const std::string& sub, const std::string& iss = kIss) {
  return {{"format", "iss_sub"}, {"iss", iss}, {"sub", sub}};
}

TEST_CASE("the three revoking event types name their iss_sub subject and time", "[events]") {
  const std::string type = GENERATE(std::string(kCaepSessionRevoked), std::string(kCaepCredentialChange),
                                    std::string(kRiscAccountDisabled));
  SECTION("subject in the event (CAEP 1.0)") {
    auto set = ParseSecurityEventSet(Set(type, {{"subject", IssSub("bot-1")}, {"event_timestamp", kNow - 60}}).dump(),
                                     kIss, kNow);
    REQUIRE(set.ok());
    REQUIRE(set->events.size() == 1);
    const SubjectEvent& e = set->events[0];
    CHECK(e.revokes);
    CHECK(e.subject_issuer == kIss);
    CHECK(e.subject == "bot-1");
    CHECK(e.event_unix == kNow - 60);
  }
  SECTION("subject at the top (SSF 1.0 sub_id), time from iat") {
    auto set = ParseSecurityEventSet(Set(type, json::object(), {{"sub_id", IssSub("bot-2")}}).dump(), kIss, kNow);
    REQUIRE(set.ok());
    CHECK(set->events[0].revokes);
    CHECK(set->events[0].subject == "bot-2");
    CHECK(set->events[0].event_unix == kNow - 5);
  }
}

TEST_CASE("an event time in the future counts as now", "[events]") {
  auto set = ParseSecurityEventSet(
      Set(kCaepSessionRevoked, {{"subject", IssSub("bot")}, {"event_timestamp", kNow + 86400}}).dump(), kIss, kNow);
  REQUIRE(set.ok());
  CHECK(set->events[0].event_unix == kNow);
}

TEST_CASE("events pgward cannot act on are kept, not acted on, with the reason", "[events]") {
  struct Case {
    const char* what;
    json set;
    const char* reason;
  };
  auto c = GENERATE(
      Case{"unknown type", Set("https://example.test/event/other", {{"subject", IssSub("bot")}}),
           "event type not acted on"},
      Case{"email subject", Set(kCaepSessionRevoked, {{"subject", {{"format", "email"}, {"email", "a@b"}}}}),
           "subject format is not iss_sub"},
      Case{"another issuer's subject", Set(kCaepSessionRevoked, {{"subject", IssSub("bot", "https://other")}}),
           "subject of another issuer"},
      Case{"no subject", Set(kCaepSessionRevoked, json::object()), "no subject"},
      Case{"control bytes in sub", Set(kCaepSessionRevoked, {{"subject", IssSub("bot\nINFO forged")}}),
           "subject is not a plain printable name"});
  INFO(c.what);
  auto set = ParseSecurityEventSet(c.set.dump(), kIss, kNow);
  REQUIRE(set.ok());
  REQUIRE(set->events.size() == 1);
  CHECK_FALSE(set->events[0].revokes);
  CHECK(set->events[0].ignored_because == c.reason);
}

TEST_CASE("claims that are not a SET are refused", "[events]") {
  json no_events = Set(kCaepSessionRevoked, json::object());
  no_events.erase("events");
  json no_jti = Set(kCaepSessionRevoked, json::object());
  no_jti.erase("jti");
  json no_iat = Set(kCaepSessionRevoked, json::object());
  no_iat.erase("iat");
  json empty_events = Set(kCaepSessionRevoked, json::object());
  empty_events["events"] = json::object();
  json bad_payload = Set(kCaepSessionRevoked, "x");
  for (const json& claims : {no_events, no_jti, no_iat, empty_events, bad_payload}) {
    INFO(claims.dump());
    CHECK(absl::IsInvalidArgument(ParseSecurityEventSet(claims.dump(), kIss, kNow).status()));
  }
  CHECK(absl::IsInvalidArgument(ParseSecurityEventSet("[1]", kIss, kNow).status()));
}

// The receiver with a verifier that accepts the bodies it is told to and a recording effect.
struct ReceiverFixture {
  absl::Status verify_error = absl::OkStatus();
  json claims = Set(kCaepSessionRevoked, {{"subject", IssSub("bot-1")}});
  absl::Status revoke_error = absl::OkStatus();
  std::vector<SubjectEvent> revoked;
  SecurityEventReceiver receiver{
      [this](std::string_view set) -> absl::StatusOr<identity::VerifiedSecurityEvent> {
        if (set != "h.p.s") return absl::InvalidArgumentError("malformed token");
        if (!verify_error.ok()) return verify_error;
        return identity::VerifiedSecurityEvent{kIss, claims.dump()};
      },
      [this](const SubjectEvent& event) -> absl::StatusOr<uint32_t> {
        if (!revoke_error.ok()) return revoke_error;
        revoked.push_back(event);
        return 2;
      },
      [] { return kNow; }};

  std::string Push(const std::string& body, const std::string& content_type = "application/secevent+jwt",
                   const std::string& method = "POST", const std::string& target = "/ssf/events") {
    HttpRequest request;
    request.method = method;
    request.target = target;
    request.headers = {{"content-type", content_type}};
    request.body = body;
    return receiver.Handle(request, "127.0.0.1");
  }
};

std::string StatusLine(const std::string& response) { return response.substr(0, response.find("\r\n")); }

json ErrorBody(const std::string& response) { return json::parse(response.substr(response.find("\r\n\r\n") + 4)); }

TEST_CASE("a verified revoking SET is accepted (202) and takes effect", "[events]") {
  ReceiverFixture f;
  CHECK(StatusLine(f.Push("h.p.s")) == "HTTP/1.1 202 Accepted");
  REQUIRE(f.revoked.size() == 1);
  CHECK(f.revoked[0].subject == "bot-1");
  // Media type parameters and case are allowed (RFC 8935 2.2, RFC 9110 8.3.1).
  CHECK(StatusLine(f.Push("h.p.s", "Application/SecEvent+JWT; charset=utf-8")) == "HTTP/1.1 202 Accepted");
}

TEST_CASE("an unknown event type is acknowledged and changes nothing", "[events]") {
  ReceiverFixture f;
  f.claims = Set("https://schemas.openid.net/secevent/ssf/event-type/verification", {{"state", "x"}});
  CHECK(StatusLine(f.Push("h.p.s")) == "HTTP/1.1 202 Accepted");
  CHECK(f.revoked.empty());
}

TEST_CASE("a refused SET gets 400 with the RFC 8935 error code and changes nothing", "[events]") {
  struct Case {
    absl::Status status;
    const char* err;
  };
  auto c = GENERATE(Case{absl::UnauthenticatedError("bad signature"), "invalid_key"},
                    Case{absl::NotFoundError("issuer not trusted"), "invalid_issuer"},
                    Case{absl::PermissionDeniedError("audience mismatch"), "invalid_audience"},
                    Case{absl::InvalidArgumentError("token typ refused"), "invalid_request"});
  ReceiverFixture f;
  f.verify_error = c.status;
  const std::string response = f.Push("h.p.s");
  CHECK(StatusLine(response) == "HTTP/1.1 400 Bad Request");
  CHECK(ErrorBody(response)["err"] == c.err);
  CHECK(ErrorBody(response)["description"] == std::string(c.status.message()));
  CHECK(f.revoked.empty());
}

TEST_CASE("a verified token that is not a SET gets invalid_request", "[events]") {
  ReceiverFixture f;
  f.claims.erase("events");
  const std::string response = f.Push("h.p.s");
  CHECK(StatusLine(response) == "HTTP/1.1 400 Bad Request");
  CHECK(ErrorBody(response)["err"] == "invalid_request");
}

TEST_CASE("keys or the store unavailable: 503, so the transmitter pushes again", "[events]") {
  ReceiverFixture f;
  SECTION("keys") {
    f.verify_error = absl::UnavailableError("issuer keys unavailable");
    CHECK(StatusLine(f.Push("h.p.s")) == "HTTP/1.1 503 Service Unavailable");
  }
  SECTION("store") {
    f.revoke_error = absl::UnavailableError("database is locked");
    const std::string response = f.Push("h.p.s");
    CHECK(StatusLine(response) == "HTTP/1.1 503 Service Unavailable");
    CHECK(response.find("Retry-After:") != std::string::npos);
  }
}

TEST_CASE("requests that are not a push are answered without verifying anything", "[events]") {
  ReceiverFixture f;
  CHECK(StatusLine(f.Push("h.p.s", "application/jwt")) == "HTTP/1.1 415 Unsupported Media Type");
  CHECK(StatusLine(f.Push("h.p.s", "application/secevent+jwt", "GET")) == "HTTP/1.1 405 Method Not Allowed");
  CHECK(f.Push("", "", "GET").find("Allow: POST\r\n") != std::string::npos);
  CHECK(StatusLine(f.Push("h.p.s", "application/secevent+jwt", "POST", "/ssf/other")) == "HTTP/1.1 404 Not Found");
  CHECK(f.revoked.empty());
}

}  // namespace
}  // namespace pgward::events
