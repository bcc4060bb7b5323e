// TokenVerifier: which tokens are accepted, which are refused and why (ARCHITECTURE.md section 2).
#include <catch2/catch.hpp>

#include "gateway/identity/jws.h"
#include "tests/unit/identity/verifier_harness.h"

namespace pgward::identity::testing {
namespace {

using nlohmann::json;

const TestKey& KeyFor(const std::string& alg) {
  if (alg == "ES256") return Keys().ec256;
  if (alg == "ES384") return Keys().ec384;
  return Keys().rsa;
}

// Refusals must be Unauthenticated with the given reason, and must not leak the token.
void RequireRefused(TokenVerifier& verifier, const std::string& token, const std::string& reason) {
  auto result = verifier.Verify(token);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == absl::StatusCode::kUnauthenticated);
  CHECK(std::string(result.status().message()) == reason);
  const std::string signature = token.substr(token.rfind('.') + 1);
  if (signature.size() > 8) CHECK(std::string(result.status().message()).find(signature) == std::string::npos);
}

TEST_CASE("every supported algorithm verifies", "[identity]") {
  const std::string alg = GENERATE("RS256", "RS384", "RS512", "PS256", "ES256", "ES384");
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  auto result = h.verifier().Verify(KeyFor(alg).Mint(alg, ValidClaims(h.now())));
  INFO(alg << ": " << result.status());
  REQUIRE(result.ok());
  CHECK(result->issuer == kIssuer);
  CHECK(result->principal == "agent-7");
  CHECK(result->subject == "agent-7");
  CHECK(result->expires_unix == h.now() + 300);
  CHECK(result->groups.empty());
}

TEST_CASE("typ absent, JWT and at+jwt are accepted in any case", "[identity]") {
  const std::string typ = GENERATE("", "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt");
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json header = {{"alg", "RS256"}, {"kid", "rsa-1"}};
  if (!typ.empty()) header["typ"] = typ;
  auto result = h.verifier().Verify(Keys().rsa.Sign("RS256", header, ValidClaims(h.now())));
  INFO(typ << ": " << result.status());
  CHECK(result.ok());
}

TEST_CASE("header checks refuse dangerous or unknown tokens", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  const json claims = ValidClaims(h.now());
  auto signed_with = [&](json header) { return Keys().rsa.Sign("RS256", header, claims); };

  SECTION("typ other than JWT or at+jwt") {
    RequireRefused(h.verifier(), signed_with({{"alg", "RS256"}, {"kid", "rsa-1"}, {"typ", "foo"}}),
                   "token typ refused");
  }
  SECTION("alg none") {
    RequireRefused(h.verifier(), signed_with({{"alg", "none"}, {"kid", "rsa-1"}}), "alg none refused");
    // An unsecured JWS (RFC 7515 A.5) has an empty signature part.
    const std::string unsecured = Base64UrlEncode(json{{"alg", "none"}}.dump()) + "." +
                                  Base64UrlEncode(claims.dump()) + ".";
    RequireRefused(h.verifier(), unsecured, "malformed token");
  }
  SECTION("HMAC algorithms") {
    const std::string alg = GENERATE("HS256", "HS384", "HS512");
    RequireRefused(h.verifier(), signed_with({{"alg", alg}, {"kid", "rsa-1"}}), "HMAC algorithms refused");
  }
  SECTION("unknown alg") {
    RequireRefused(h.verifier(), signed_with({{"alg", "EdDSA"}, {"kid", "rsa-1"}}), "unsupported alg");
    RequireRefused(h.verifier(), signed_with({{"alg", "rs256"}, {"kid", "rsa-1"}}), "unsupported alg");
  }
  SECTION("crit header present") {
    RequireRefused(h.verifier(), signed_with({{"alg", "RS256"}, {"kid", "rsa-1"}, {"crit", {"exp"}}, {"exp", 1}}),
                   "crit header refused");
  }
  SECTION("missing kid when the issuer has several keys") {
    RequireRefused(h.verifier(), signed_with({{"alg", "RS256"}}), "missing kid and issuer has several keys");
  }
  SECTION("header alg the key's type cannot produce") {
    RequireRefused(h.verifier(), Keys().rsa.Sign("RS256", {{"alg", "ES256"}, {"kid", "rsa-1"}}, claims),
                   "key for kid does not match alg");
  }
}

TEST_CASE("a token without kid uses the issuer's only key", "[identity]") {
  VerifierHarness h(JwksOf({Keys().rsa.Jwk()}));
  REQUIRE(h.verifier().Start().ok());
  auto result = h.verifier().Verify(Keys().rsa.Sign("RS256", {{"alg", "RS256"}}, ValidClaims(h.now())));
  CHECK(result.ok());
}

TEST_CASE("a JWK alg that differs from the token alg is refused", "[identity]") {
  VerifierHarness h(JwksOf({Keys().rsa.Jwk("RS256")}));
  REQUIRE(h.verifier().Start().ok());
  CHECK(h.verifier().Verify(Keys().rsa.Mint("RS256", ValidClaims(h.now()))).ok());
  RequireRefused(h.verifier(), Keys().rsa.Mint("PS256", ValidClaims(h.now())), "key for kid does not match alg");
}

TEST_CASE("claim checks refuse tokens for someone else or out of time", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  auto mint = [&] { return Keys().rsa.Mint("RS256", claims); };

  SECTION("issuer not configured") {
    claims["iss"] = "https://evil.example.test";
    RequireRefused(h.verifier(), mint(), "issuer not trusted");
  }
  SECTION("issuer with a trailing slash is a different issuer") {
    claims["iss"] = std::string(kIssuer) + "/";
    RequireRefused(h.verifier(), mint(), "issuer not trusted");
  }
  SECTION("audience mismatch") {
    claims["aud"] = "another-service";
    RequireRefused(h.verifier(), mint(), "audience mismatch");
    claims["aud"] = json::array({"a", "b"});
    RequireRefused(h.verifier(), mint(), "audience mismatch");
    claims.erase("aud");
    RequireRefused(h.verifier(), mint(), "audience mismatch");
  }
  SECTION("audience array containing the configured audience") {
    claims["aud"] = json::array({"other", kAudience});
    CHECK(h.verifier().Verify(mint()).ok());
  }
  SECTION("exp missing") {
    claims.erase("exp");
    RequireRefused(h.verifier(), mint(), "exp missing");
    claims["exp"] = "tomorrow";
    RequireRefused(h.verifier(), mint(), "exp missing");
  }
  SECTION("exp in the past beyond leeway") {
    claims["exp"] = h.now() - 3600;
    RequireRefused(h.verifier(), mint(), "token expired");
  }
  SECTION("nbf in the future beyond leeway") {
    claims["nbf"] = h.now() + 120;
    RequireRefused(h.verifier(), mint(), "token not yet valid");
    claims["nbf"] = h.now() + 59;
    CHECK(h.verifier().Verify(mint()).ok());
  }
  SECTION("principal claim missing or empty") {
    claims.erase("sub");
    RequireRefused(h.verifier(), mint(), "principal claim missing");
    claims["sub"] = "";
    RequireRefused(h.verifier(), mint(), "principal claim missing");
    claims["sub"] = 42;
    RequireRefused(h.verifier(), mint(), "principal claim missing");
  }
}

TEST_CASE("exp leeway boundary is 60 seconds", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  claims["exp"] = h.now() - 59;
  CHECK(h.verifier().Verify(Keys().rsa.Mint("RS256", claims)).ok());
  claims["exp"] = h.now() - 60;
  CHECK(h.verifier().Verify(Keys().rsa.Mint("RS256", claims)).ok());
  claims["exp"] = h.now() - 61;
  RequireRefused(h.verifier(), Keys().rsa.Mint("RS256", claims), "token expired");
}

TEST_CASE("oversized and malformed tokens are refused before parsing", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  claims["padding"] = std::string(70 * 1024, 'x');
  RequireRefused(h.verifier(), Keys().rsa.Mint("RS256", claims), "token too large");
  RequireRefused(h.verifier(), "", "token missing");
  RequireRefused(h.verifier(), "abc.def", "malformed token");
  RequireRefused(h.verifier(), "a.b.c.d.e", "malformed token");
  RequireRefused(h.verifier(), "!!!.e30.c2ln", "malformed token header");
  RequireRefused(h.verifier(), Base64UrlEncode("[1]") + ".e30.c2ln", "malformed token header");
  const std::string header = Base64UrlEncode(json{{"alg", "RS256"}, {"kid", "rsa-1"}}.dump());
  RequireRefused(h.verifier(), header + "." + Base64UrlEncode("not json") + ".c2ln", "malformed token payload");
}

TEST_CASE("a tampered signature is refused", "[identity]") {
  const std::string alg = GENERATE("RS256", "PS256", "ES256", "ES384");
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  std::string token = KeyFor(alg).Mint(alg, ValidClaims(h.now()));
  // Flip a middle character of the signature: the last one may carry only padding bits.
  const size_t sig_start = token.rfind('.') + 1;
  char& c = token[sig_start + (token.size() - sig_start) / 2];
  c = c == 'A' ? 'B' : 'A';
  RequireRefused(h.verifier(), token, "bad signature");
}

TEST_CASE("a tampered payload is refused", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  const std::string good = Keys().rsa.Mint("RS256", ValidClaims(h.now()));
  json claims = ValidClaims(h.now());
  claims["sub"] = "admin";
  const std::string forged_payload = Base64UrlEncode(claims.dump());
  const size_t first = good.find('.');
  const size_t second = good.rfind('.');
  const std::string forged = good.substr(0, first + 1) + forged_payload + good.substr(second);
  RequireRefused(h.verifier(), forged, "bad signature");
}

TEST_CASE("a token signed by an untrusted key reusing a trusted kid is refused", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  RequireRefused(h.verifier(), Keys().attacker_same_kid.Mint("RS256", ValidClaims(h.now())), "bad signature");
}

TEST_CASE("groups come from an array or a single string", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  SECTION("array") {
    claims["groups"] = json::array({"analysts", "oncall", 7});
    auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", claims));
    REQUIRE(result.ok());
    CHECK(result->groups == std::vector<std::string>{"analysts", "oncall"});
  }
  SECTION("single string") {
    claims["groups"] = "analysts";
    auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", claims));
    REQUIRE(result.ok());
    CHECK(result->groups == std::vector<std::string>{"analysts"});
  }
  SECTION("a different configured claim") {
    VerifierConfig config = VerifierHarness::DefaultConfig();
    config.groups_claim = "roles";
    VerifierHarness roles(DefaultJwks(), config);
    REQUIRE(roles.verifier().Start().ok());
    claims["groups"] = "ignored";
    claims["roles"] = json::array({"dba"});
    auto result = roles.verifier().Verify(Keys().rsa.Mint("RS256", claims));
    REQUIRE(result.ok());
    CHECK(result->groups == std::vector<std::string>{"dba"});
  }
}

TEST_CASE("principal_claim client_id makes the client id the principal", "[identity]") {
  VerifierConfig config = VerifierHarness::DefaultConfig();
  config.principal_claim = "client_id";
  VerifierHarness h(DefaultJwks(), config);
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", claims));
  REQUIRE(result.ok());
  CHECK(result->principal == "agent-7-client");
  CHECK(result->subject == "agent-7");
  claims.erase("client_id");
  RequireRefused(h.verifier(), Keys().rsa.Mint("RS256", claims), "principal claim missing");
}

TEST_CASE("a genuine token whose principal or group name is not plain text is refused", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  const std::string bad = GENERATE(std::string("bot\nINFO frontend: forged"), std::string("bot\x1b[2J"),
                                   std::string("bot\xe2\x80\xae"), std::string("bot\xc2\x85"));
  SECTION("in the principal claim") {
    json claims = ValidClaims(h.now());
    claims["sub"] = bad;
    auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", claims));
    REQUIRE(absl::IsPermissionDenied(result.status()));
    const std::string message(result.status().message());
    CHECK(message.find("principal name") != std::string::npos);
    CHECK(message.find(bad) == std::string::npos);
  }
  SECTION("in a group") {
    json claims = ValidClaims(h.now());
    claims["groups"] = json::array({"analysts", bad});
    auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", claims));
    REQUIRE(absl::IsPermissionDenied(result.status()));
    CHECK(std::string(result.status().message()).find("group name") != std::string::npos);
  }
}

TEST_CASE("empty group names are skipped, not refused", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  claims["groups"] = json::array({"", "analysts"});
  auto result = h.verifier().Verify(Keys().rsa.Mint("RS256", claims));
  REQUIRE(result.ok());
  CHECK(result->groups == std::vector<std::string>{"analysts"});
}

}  // namespace
}  // namespace pgward::identity::testing
