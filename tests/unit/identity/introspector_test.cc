// Introspector: RFC 7662 responses turned into identities, against a scripted IdP.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "gateway/identity/introspector.h"

namespace pgward::identity {
namespace {

constexpr char kIssuer[] = "https://idp.example";
constexpr char kEndpoint[] = "https://idp.example/token/introspection";

// Discovery, and one scripted introspection answer; records what was posted.
class ScriptedIdp : public HttpFetcher {
 public:
  absl::StatusOr<std::string> Get(const std::string& url) override {
    if (url != std::string(kIssuer) + "/.well-known/openid-configuration") return absl::UnavailableError("404");
    return nlohmann::json{{"issuer", kIssuer}, {"introspection_endpoint", kEndpoint}}.dump();
  }
  absl::StatusOr<std::string> PostForm(const std::string& url, const std::string& form, const std::string& user,
                                       const std::string& password) override {
    ++posts;
    last_url = url;
    last_form = form;
    last_user = user + ":" + password;
    return answer;
  }
  absl::StatusOr<std::string> answer;
  int posts = 0;
  std::string last_url, last_form, last_user;
};

struct Fixture {
  ScriptedIdp idp;
  int64_t now = 1'000'000;
  Introspector introspector{[] {
                              IntrospectionConfig c;
                              c.issuer = kIssuer;
                              c.audiences = {"pgward"};
                              c.client_id = "gw";
                              c.client_secret = "s3cret";
                              return c;
                            }(),
                            idp, [this] { return now; }};
};

nlohmann::json Active() {
  return {{"active", true}, {"client_id", "opaque-bot"}, {"aud", "pgward"}, {"exp", 1'000'600},
          {"iss", kIssuer}, {"groups", {"analysts"}}};
}

TEST_CASE("introspection: an active token becomes an identity, an inactive one none", "[identity][introspection]") {
  Fixture f;
  REQUIRE(f.introspector.Start().ok());
  CHECK(f.introspector.endpoint() == kEndpoint);
  f.idp.answer = Active().dump();
  auto active = f.introspector.Introspect("tok en+/=", /*use_cache=*/true);
  REQUIRE(active.ok());
  REQUIRE(active->has_value());
  CHECK((*active)->principal == "opaque-bot");  // client_id: there is no sub
  CHECK((*active)->issuer == kIssuer);
  CHECK((*active)->groups == std::vector<std::string>{"analysts"});
  CHECK((*active)->expires_unix == 1'000'600);
  CHECK(f.idp.last_url == kEndpoint);
  CHECK(f.idp.last_form == "token=tok%20en%2B%2F%3D&token_type_hint=access_token");
  CHECK(f.idp.last_user == "gw:s3cret");

  // Cached for logins; the re-check asks again and sees the revoke.
  f.idp.answer = nlohmann::json{{"active", false}}.dump();
  CHECK(f.introspector.Introspect("tok en+/=", true)->has_value());
  CHECK(f.idp.posts == 1);
  auto revoked = f.introspector.Introspect("tok en+/=", /*use_cache=*/false);
  REQUIRE(revoked.ok());
  CHECK_FALSE(revoked->has_value());
  CHECK(f.idp.posts == 2);
  // And the cache now holds the newer answer.
  CHECK_FALSE(f.introspector.Introspect("tok en+/=", true)->has_value());
  f.now += 11;  // past cache_ttl (10 s): asked again
  f.idp.answer = Active().dump();
  CHECK(f.introspector.Introspect("tok en+/=", true)->has_value());
  CHECK(f.idp.posts == 3);
}

TEST_CASE("introspection: answers pgward cannot accept are refused, and an unreachable IdP is unavailable",
          "[identity][introspection]") {
  Fixture f;
  REQUIRE(f.introspector.Start().ok());
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json a = Active();
    edit(a);
    f.idp.answer = a.dump();
    return f.introspector.Introspect("t", /*use_cache=*/false).status();
  };
  CHECK(with([](nlohmann::json& a) { a["aud"] = "someone-else"; }).code() == absl::StatusCode::kUnauthenticated);
  CHECK(with([](nlohmann::json& a) { a["iss"] = "https://evil.example"; }).code() ==
        absl::StatusCode::kUnauthenticated);
  CHECK(with([](nlohmann::json& a) { a["exp"] = 10; }).code() == absl::StatusCode::kUnauthenticated);
  CHECK(with([](nlohmann::json& a) { a.erase("exp"); }).code() == absl::StatusCode::kUnauthenticated);
  CHECK(with([](nlohmann::json& a) { a.erase("client_id"); }).code() == absl::StatusCode::kUnauthenticated);
  CHECK(with([](nlohmann::json& a) { a["client_id"] = "bad\nname"; }).code() == absl::StatusCode::kPermissionDenied);
  CHECK(with([](nlohmann::json& a) { a["active"] = "true"; }).code() == absl::StatusCode::kUnavailable);
  CHECK(with([](nlohmann::json& a) { a["sub"] = "person-7"; }).ok());  // sub wins over client_id
  f.idp.answer = "not json";
  CHECK(f.introspector.Introspect("t", false).status().code() == absl::StatusCode::kUnavailable);
  f.idp.answer = absl::UnavailableError("connection refused");
  CHECK(f.introspector.Introspect("t", false).status().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("LooksLikeJwt tells JWS compact tokens from opaque ones", "[identity][introspection]") {
  CHECK(LooksLikeJwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
  CHECK_FALSE(LooksLikeJwt("1S_JkZdt8d8Y9rNjhr_oGNU1IIrbZTpT"));
  CHECK_FALSE(LooksLikeJwt("a.b"));
  CHECK_FALSE(LooksLikeJwt(".b.c"));
}

}  // namespace
}  // namespace pgward::identity
