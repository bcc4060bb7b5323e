// Test-only signing keys and a token minter, so identity tests can build real JWKS and JWS values.
#pragma once

#include <openssl/evp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/identity/http_fetcher.h"

namespace pgward::identity::testing {

// A private key that can mint tokens and publish its public half as a JWK.
class TestKey {
 public:
  static TestKey Rsa(std::string kid, int bits = 2048);
  static TestKey Ec(std::string kid, const std::string& curve);  // "P-256" or "P-384"

  const std::string& kid() const { return kid_; }
  // The public JWK (RFC 7517); `alg` adds the optional "alg" member.
  nlohmann::json Jwk(const std::string& alg = "") const;
  // Signs "b64(header).b64(payload)" with `alg` (the header is used exactly as given).
  std::string Sign(const std::string& alg, const nlohmann::json& header, const nlohmann::json& payload) const;
  // Header {"alg", "kid", "typ": "at+jwt"} and sign.
  std::string Mint(const std::string& alg, const nlohmann::json& payload) const;

 private:
  TestKey(std::string kid, EVP_PKEY* pkey, std::string curve);
  std::string kid_;
  std::shared_ptr<EVP_PKEY> pkey_;
  std::string curve_;  // empty for RSA
};

std::string JwksOf(const std::vector<nlohmann::json>& jwks);

// Serves fixed bodies by URL and counts requests; the test keeps a pointer to change them.
class FakeHttpFetcher : public HttpFetcher {
 public:
  void Set(const std::string& url, std::string body);
  void Remove(const std::string& url);
  int Count(const std::string& url) const;
  absl::StatusOr<std::string> Get(const std::string& url) override;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> bodies_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::identity::testing
