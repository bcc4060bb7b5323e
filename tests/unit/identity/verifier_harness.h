// A TokenVerifier wired to a fake discovery/JWKS server and a settable clock, for identity tests.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/identity/token_verifier.h"
#include "tests/unit/identity/test_tokens.h"

namespace pgward::identity::testing {

inline constexpr char kIssuer[] = "https://idp.example.test";
inline constexpr char kDiscoveryUrl[] = "https://idp.example.test/.well-known/openid-configuration";
inline constexpr char kJwksUrl[] = "https://idp.example.test/keys";
inline constexpr char kAudience[] = "pgward";
inline constexpr int64_t kStartTime = 1'700'000'000;

// Keys are expensive to generate (RSA), so each test binary makes them once.
struct SharedKeys {
  TestKey rsa = TestKey::Rsa("rsa-1");
  TestKey ec256 = TestKey::Ec("ec-256", "P-256");
  TestKey ec384 = TestKey::Ec("ec-384", "P-384");
  TestKey rsa_rotated = TestKey::Rsa("rsa-2");
  TestKey attacker_same_kid = TestKey::Rsa("rsa-1");
};
inline const SharedKeys& Keys() {
  static const SharedKeys keys;
  return keys;
}

inline std::string DefaultJwks() {
  return JwksOf({Keys().rsa.Jwk(), Keys().ec256.Jwk(), Keys().ec384.Jwk()});
}

// Claims a valid access token from kIssuer carries at time `now`.
inline nlohmann::json ValidClaims(int64_t now) {
  return {{"iss", kIssuer}, {"aud", kAudience},   {"sub", "agent-7"},
          {"iat", now},     {"exp", now + 300},  {"client_id", "agent-7-client"}};
}

class VerifierHarness {
 public:
  explicit VerifierHarness(const std::string& jwks = DefaultJwks(), VerifierConfig config = DefaultConfig())
      : clock_(std::make_shared<std::atomic<int64_t>>(kStartTime)) {
    auto fetcher = std::make_unique<FakeHttpFetcher>();
    fetcher_ = fetcher.get();
    fetcher_->Set(kDiscoveryUrl, nlohmann::json{{"issuer", kIssuer}, {"jwks_uri", kJwksUrl}}.dump());
    fetcher_->Set(kJwksUrl, jwks);
    auto clock = clock_;
    verifier_ = std::make_unique<TokenVerifier>(std::move(config), std::move(fetcher),
                                                [clock] { return clock->load(); });
  }

  static VerifierConfig DefaultConfig() {
    VerifierConfig config;
    config.issuers.push_back(IssuerConfig{kIssuer, {kAudience}, ""});
    return config;
  }

  TokenVerifier& verifier() { return *verifier_; }
  FakeHttpFetcher& fetcher() { return *fetcher_; }
  int64_t now() const { return clock_->load(); }
  void Advance(int64_t seconds) { clock_->fetch_add(seconds); }

 private:
  std::shared_ptr<std::atomic<int64_t>> clock_;
  FakeHttpFetcher* fetcher_;  // owned by verifier_
  std::unique_ptr<TokenVerifier> verifier_;
};

}  // namespace pgward::identity::testing
