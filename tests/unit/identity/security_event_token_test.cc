// TokenVerifier::VerifySecurityEvent: which pushed SETs are believed (RFC 8417, RFC 8935).
#include <catch2/catch.hpp>

#include "gateway/identity/jws.h"
#include "tests/unit/identity/verifier_harness.h"

namespace pgward::identity::testing {
namespace {

using nlohmann::json;

json SetClaims(int64_t now) {
  return {{"iss", kIssuer},
          {"aud", kAudience},
          {"jti", "set-1"},
          {"iat", now},
          {"events",
           {{"https://schemas.openid.net/secevent/caep/event-type/session-revoked",
             {{"subject", {{"format", "iss_sub"}, {"iss", kIssuer}, {"sub", "agent-7"}}}}}}}};
}

json SetHeader(const std::string& typ = "secevent+jwt") { return {{"alg", "RS256"}, {"kid", "rsa-1"}, {"typ", typ}}; }

TEST_CASE("a SET signed by a trusted issuer's key for our audience is verified", "[identity][events]") {
  const std::string typ = GENERATE("secevent+jwt", "application/secevent+jwt", "SecEvent+JWT");
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  auto verified = h.verifier().VerifySecurityEvent(Keys().rsa.Sign("RS256", SetHeader(typ), SetClaims(h.now())));
  INFO(verified.status());
  REQUIRE(verified.ok());
  CHECK(verified->issuer == kIssuer);
  CHECK(json::parse(verified->payload_json)["jti"] == "set-1");
}

TEST_CASE("SETs that must not be believed are refused with the code for their RFC 8935 error", "[identity][events]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  const json claims = SetClaims(h.now());
  auto refused = [&](const std::string& set) { return h.verifier().VerifySecurityEvent(set).status(); };

  SECTION("an access token pushed as a SET (typ at+jwt, or none)") {
    CHECK(absl::IsInvalidArgument(refused(Keys().rsa.Sign("RS256", SetHeader("at+jwt"), claims))));
    CHECK(absl::IsInvalidArgument(refused(Keys().rsa.Mint("RS256", ValidClaims(h.now())))));
    CHECK(absl::IsInvalidArgument(refused(Keys().rsa.Sign("RS256", {{"alg", "RS256"}, {"kid", "rsa-1"}}, claims))));
  }
  SECTION("a bad signature") {
    const std::string set = Keys().rsa.Sign("RS256", SetHeader(), claims);
    const size_t dot = set.rfind('.');
    std::string signature = *Base64UrlDecode(set.substr(dot + 1));
    signature[signature.size() / 2] ^= 0x01;
    CHECK(absl::IsUnauthenticated(refused(set.substr(0, dot + 1) + Base64UrlEncode(signature))));
  }
  SECTION("another key under a trusted kid") {
    CHECK(absl::IsUnauthenticated(refused(Keys().attacker_same_kid.Sign("RS256", SetHeader(), claims))));
  }
  SECTION("alg none and HMAC") {
    json none = SetHeader();
    none["alg"] = "none";
    CHECK(absl::IsUnauthenticated(refused(Keys().rsa.Sign("RS256", none, claims))));
    json hs = SetHeader();
    hs["alg"] = "HS256";
    CHECK(absl::IsUnauthenticated(refused(Keys().rsa.Sign("RS256", hs, claims))));
  }
  SECTION("a foreign audience") {
    json other = claims;
    other["aud"] = "someone-else";
    CHECK(absl::IsPermissionDenied(refused(Keys().rsa.Sign("RS256", SetHeader(), other))));
    other.erase("aud");
    CHECK(absl::IsPermissionDenied(refused(Keys().rsa.Sign("RS256", SetHeader(), other))));
  }
  SECTION("an untrusted issuer") {
    json other = claims;
    other["iss"] = "https://evil.test";
    CHECK(absl::IsNotFound(refused(Keys().rsa.Sign("RS256", SetHeader(), other))));
  }
  SECTION("garbage") {
    CHECK(absl::IsInvalidArgument(refused("")));
    CHECK(absl::IsInvalidArgument(refused("not-a-jwt")));
    CHECK(absl::IsInvalidArgument(refused(std::string(70 * 1024, 'a'))));
  }
}

TEST_CASE("access-token verification still answers Unauthenticated for every refusal", "[identity][events]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json other = ValidClaims(h.now());
  other["iss"] = "https://evil.test";
  auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", other));
  REQUIRE_FALSE(result.ok());
  CHECK(absl::IsUnauthenticated(result.status()));
  CHECK(result.status().message() == "issuer not trusted");
  // A SET presented as a password is not an access token.
  auto set = h.verifier().Verify(Keys().rsa.Sign("RS256", SetHeader(), SetClaims(h.now())));
  CHECK(absl::IsUnauthenticated(set.status()));
}

}  // namespace
}  // namespace pgward::identity::testing
