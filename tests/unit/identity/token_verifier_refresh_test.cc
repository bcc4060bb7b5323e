// TokenVerifier key lifecycle: discovery, rotation, rate-limited refresh, static JWKS files, the verified-token cache.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "gateway/identity/verified_token_cache.h"
#include "tests/unit/identity/verifier_harness.h"

namespace pgward::identity::testing {
namespace {

using nlohmann::json;

TEST_CASE("Start reads discovery then the JWKS it names", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  CHECK(h.fetcher().Count(kDiscoveryUrl) == 1);
  CHECK(h.fetcher().Count(kJwksUrl) == 1);
}

TEST_CASE("Start errors name the issuer and what failed", "[identity]") {
  SECTION("discovery unreachable") {
    VerifierHarness h;
    h.fetcher().Remove(kDiscoveryUrl);
    absl::Status status = h.verifier().Start();
    REQUIRE_FALSE(status.ok());
    CHECK_THAT(std::string(status.message()), Catch::Contains(kIssuer) && Catch::Contains("discovery failed"));
  }
  SECTION("discovery names another issuer") {
    VerifierHarness h;
    h.fetcher().Set(kDiscoveryUrl, json{{"issuer", "https://other.test"}, {"jwks_uri", kJwksUrl}}.dump());
    absl::Status status = h.verifier().Start();
    CHECK_THAT(std::string(status.message()), Catch::Contains(kIssuer) && Catch::Contains("different issuer"));
  }
  SECTION("https issuer with a plain http jwks_uri") {
    VerifierHarness h;
    h.fetcher().Set(kDiscoveryUrl, json{{"issuer", kIssuer}, {"jwks_uri", "http://idp.example.test/keys"}}.dump());
    CHECK_THAT(std::string(h.verifier().Start().message()), Catch::Contains("jwks_uri must be https"));
  }
  SECTION("JWKS without usable keys") {
    VerifierHarness h(JwksOf({json{{"kty", "oct"}, {"k", "c2VjcmV0"}, {"kid", "hmac"}}}));
    absl::Status status = h.verifier().Start();
    CHECK_THAT(std::string(status.message()), Catch::Contains(kIssuer) && Catch::Contains("no usable signing key"));
  }
  SECTION("issuer without audience") {
    VerifierConfig config;
    config.issuers.push_back(IssuerConfig{kIssuer, {}, ""});
    VerifierHarness h(DefaultJwks(), config);
    CHECK_THAT(std::string(h.verifier().Start().message()), Catch::Contains("no audience configured"));
  }
}

TEST_CASE("a key rotated in after start is fetched on first use", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  h.fetcher().Set(kJwksUrl, JwksOf({Keys().rsa.Jwk(), Keys().rsa_rotated.Jwk()}));
  auto result = h.verifier().Verify(Keys().rsa_rotated.Mint("RS256", ValidClaims(h.now())));
  INFO(result.status());
  CHECK(result.ok());
  CHECK(h.fetcher().Count(kJwksUrl) == 2);
  CHECK(h.fetcher().Count(kDiscoveryUrl) == 1);  // the jwks_uri is remembered
}

TEST_CASE("refresh on unknown kid is rate limited", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  const std::string unknown = Keys().rsa_rotated.Mint("RS256", ValidClaims(h.now()));
  CHECK(h.verifier().Verify(unknown).status().message() == "unknown kid after refresh");
  CHECK(h.fetcher().Count(kJwksUrl) == 2);
  // Within the interval a second unknown kid costs no request, even once the key is published.
  h.fetcher().Set(kJwksUrl, JwksOf({Keys().rsa.Jwk(), Keys().rsa_rotated.Jwk()}));
  h.Advance(9);
  CHECK(h.verifier().Verify(unknown).status().message() == "unknown kid after refresh");
  CHECK(h.fetcher().Count(kJwksUrl) == 2);
  h.Advance(1);
  CHECK(h.verifier().Verify(unknown).ok());
  CHECK(h.fetcher().Count(kJwksUrl) == 3);
}

TEST_CASE("concurrent verification across a key rotation refreshes once", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  h.fetcher().Set(kJwksUrl, JwksOf({Keys().rsa.Jwk(), Keys().rsa_rotated.Jwk()}));
  constexpr int kThreads = 4;
  constexpr int kTokensPerThread = 25;
  std::vector<std::vector<std::string>> tokens(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kTokensPerThread; ++i) {
      json claims = ValidClaims(h.now());
      claims["jti"] = std::to_string(t) + "-" + std::to_string(i);  // distinct tokens: no cache hits
      const TestKey& key = i % 2 == 0 ? Keys().rsa : Keys().rsa_rotated;
      tokens[t].push_back(key.Mint("RS256", claims));
    }
  }
  std::vector<int> accepted(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (const std::string& token : tokens[t]) accepted[t] += h.verifier().Verify(token).ok() ? 1 : 0;
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) CHECK(accepted[t] == kTokensPerThread);
  CHECK(h.fetcher().Count(kJwksUrl) == 2);
}

TEST_CASE("keys are refreshed periodically and old keys survive a failed refresh", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  claims["exp"] = h.now() + 3600;
  const std::string token = Keys().rsa.Mint("RS256", claims);
  REQUIRE(h.verifier().Verify(token).ok());

  h.fetcher().Remove(kJwksUrl);  // IdP outage
  h.Advance(301);
  claims["jti"] = "second";
  CHECK(h.verifier().Verify(Keys().rsa.Mint("RS256", claims)).ok());
  CHECK(h.fetcher().Count(kJwksUrl) == 2);

  // The IdP comes back having dropped rsa-1: the next periodic refresh stops trusting it.
  h.fetcher().Set(kJwksUrl, JwksOf({Keys().ec256.Jwk()}));
  h.Advance(301);
  claims["jti"] = "third";
  CHECK(h.verifier().Verify(Keys().rsa.Mint("RS256", claims)).status().message() == "unknown kid after refresh");
  CHECK(h.verifier().Verify(Keys().ec256.Mint("ES256", claims)).ok());
}

TEST_CASE("an issuer whose first load failed is retried lazily", "[identity]") {
  VerifierHarness h;
  h.fetcher().Remove(kJwksUrl);
  REQUIRE_FALSE(h.verifier().Start().ok());
  const std::string token = Keys().rsa.Mint("RS256", ValidClaims(h.now()));
  CHECK(h.verifier().Verify(token).status().message() == "issuer keys unavailable");
  h.fetcher().Set(kJwksUrl, DefaultJwks());
  h.Advance(10);
  CHECK(h.verifier().Verify(token).ok());
}

TEST_CASE("a static JWKS file replaces discovery", "[identity]") {
  char path[] = "/tmp/pgward-jwks-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(path) << JwksOf({Keys().ec384.Jwk()});
  VerifierConfig config;
  config.issuers.push_back(IssuerConfig{"https://offline.example.test", {kAudience}, path});
  VerifierHarness h(DefaultJwks(), config);
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  claims["iss"] = "https://offline.example.test";
  auto result = h.verifier().Verify(Keys().ec384.Mint("ES384", claims));
  INFO(result.status());
  CHECK(result.ok());
  CHECK(h.fetcher().Count("https://offline.example.test/.well-known/openid-configuration") == 0);
  std::remove(path);

  VerifierConfig missing;
  missing.issuers.push_back(IssuerConfig{"https://offline.example.test", {kAudience}, "/nonexistent/jwks.json"});
  VerifierHarness m(DefaultJwks(), missing);
  CHECK_THAT(std::string(m.verifier().Start().message()), Catch::Contains("cannot open JWKS file"));
}

TEST_CASE("a verified token is served from the cache until it expires", "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  json claims = ValidClaims(h.now());
  claims["exp"] = h.now() + 30;
  const std::string token = Keys().rsa.Mint("RS256", claims);
  REQUIRE(h.verifier().Verify(token).ok());
  // Even with the keys gone, the cached result stands until exp + leeway...
  h.fetcher().Set(kJwksUrl, JwksOf({Keys().ec256.Jwk()}));
  h.Advance(30 + 60);
  auto cached = h.verifier().Verify(token);
  REQUIRE(cached.ok());
  CHECK(cached->principal == "agent-7");
  // ...and not one second longer.
  h.Advance(1);
  CHECK(h.verifier().Verify(token).status().message() == "token expired");
}

TEST_CASE("the verified-token cache is bounded and forgets expired entries", "[identity]") {
  VerifiedTokenCache cache(3);
  VerifiedToken t;
  t.principal = "p";
  cache.Insert("a", t, 100, 0);
  cache.Insert("b", t, 100, 0);
  cache.Insert("c", t, 10, 0);
  CHECK(cache.size() == 3);
  cache.Insert("d", t, 100, 50);  // "c" is expired at 50 and makes room
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.Lookup("c", 50).has_value());
  CHECK(cache.Lookup("d", 50).has_value());
  cache.Insert("e", t, 100, 50);  // all live: one is evicted, the bound holds
  CHECK(cache.size() == 3);
  CHECK(cache.Lookup("e", 100).has_value());
  CHECK_FALSE(cache.Lookup("e", 101).has_value());
}


TEST_CASE("the cache answers only for the exact bytes it verified; a tampered copy is still checked",
          "[identity]") {
  VerifierHarness h;
  REQUIRE(h.verifier().Start().ok());
  const std::string token = Keys().rsa.Mint("RS256", ValidClaims(h.now()));
  REQUIRE(h.verifier().Verify(token).ok());  // now cached
  std::string tampered = token;
  const size_t sig_start = tampered.rfind('.') + 1;
  char& c = tampered[sig_start + (tampered.size() - sig_start) / 2];
  c = c == 'A' ? 'B' : 'A';
  CHECK(h.verifier().Verify(tampered).status().message() == "bad signature");
  CHECK(h.verifier().Verify(tampered).status().message() == "bad signature");  // refusals are not cached
  CHECK(h.verifier().Verify(token).ok());
}

TEST_CASE("the verified-token cache is safe to share between threads", "[identity]") {
  VerifiedTokenCache cache(64);
  VerifiedToken t;
  t.principal = "p";
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&cache, &t, i] {
      for (int n = 0; n < 2000; ++n) {
        const std::string token = "token-" + std::to_string((n * 7 + i) % 200);
        if (!cache.Lookup(token, n).has_value()) cache.Insert(token, t, n + 100, n);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(cache.size() <= 64);
}

}  // namespace
}  // namespace pgward::identity::testing
