// Verifies OIDC access tokens from the configured trusted issuers (ARCHITECTURE.md section 2).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/identity/http_fetcher.h"
#include "gateway/identity/jwks_cache.h"
#include "gateway/identity/verified_token.h"
#include "gateway/identity/verified_token_cache.h"

namespace pgward::identity {

struct IssuerConfig {
  std::string issuer_url;              // exact "iss" value; discovery at issuer_url + "/.well-known/openid-configuration"
  std::vector<std::string> audiences;  // token "aud" (string or array) must contain one of them
  std::string jwks_file;               // optional: static JWKS file instead of discovery (offline set-ups)
};

struct VerifierConfig {
  std::vector<IssuerConfig> issuers;
  std::string principal_claim = "sub";
  std::string groups_claim = "groups";
  int64_t leeway_seconds = 60;
  size_t max_token_bytes = 64 * 1024;
  std::string ca_file;                            // optional CA bundle for HTTPS discovery/JWKS
  int64_t jwks_refresh_seconds = 300;             // periodic refresh
  int64_t unknown_kid_min_interval_seconds = 10;  // rate limit for refresh-on-unknown-kid
};

// A Security Event Token (RFC 8417) whose signature and audience verified.
struct VerifiedSecurityEvent {
  std::string issuer;        // its "iss", one of the trusted issuers
  std::string payload_json;  // its claims, for SecurityEvent parsing (gateway/events)
};

class TokenVerifier {
 public:
  // `now_unix` is injectable for tests; null means std::time.
  TokenVerifier(VerifierConfig config, std::unique_ptr<HttpFetcher> fetcher,
                std::function<int64_t()> now_unix = nullptr);
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // Discovery and first JWKS fetch (or JWKS file read) for every issuer. The error names the
  // issuer and what failed. An issuer that failed here is retried lazily by Verify.
  absl::Status Start();

  // Thread-safe. Errors are kUnauthenticated with an internal reason meant for logs, e.g.
  // "token expired", "unknown kid after refresh", "issuer not trusted", "audience mismatch",
  // "alg none refused", "HMAC algorithms refused", "bad signature", "token too large",
  // "malformed token". Reasons never contain the token or its signature.
  // kPermissionDenied for a genuine token whose principal or a group name is not acceptable
  // (identity_name.h); its message is safe to show the caller and never echoes the name.
  absl::StatusOr<VerifiedToken> Verify(std::string_view token);

  // A SET pushed to the gateway (RFC 8935): typ "secevent+jwt" (RFC 8417 2.3, which keeps an
  // access or ID token from passing for one), signed by a trusted issuer's key (the access
  // tokens' rules: no alg none, no HMAC, no crit) and with an "aud" among that issuer's
  // audiences. Thread-safe. Error codes, for the RFC 8935 2.3 error a transmitter is sent:
  // kInvalidArgument malformed or not a SET (invalid_request), kNotFound issuer not trusted
  // (invalid_issuer), kUnauthenticated key or signature (invalid_key), kPermissionDenied
  // audience (invalid_audience). Messages never echo the token.
  absl::StatusOr<VerifiedSecurityEvent> VerifySecurityEvent(std::string_view set);

 private:
  struct IssuerState;
  enum class TokenKind { kAccessToken, kSecurityEvent };

  IssuerState* FindIssuer(std::string_view iss);
  // The issuer's current key snapshot, refreshed first when older than jwks_refresh_seconds.
  std::shared_ptr<const JwksCache> CurrentKeys(IssuerState& issuer, int64_t now);
  // Refetches after an unknown kid unless a fetch happened within the rate-limit interval.
  std::shared_ptr<const JwksCache> RefreshForUnknownKid(IssuerState& issuer, std::string_view kid,
                                                        int64_t now);
  // Discovery (when the jwks_uri is not known yet) and JWKS fetch; installs the new keys.
  absl::Status Refresh(IssuerState& issuer, int64_t now);
  absl::StatusOr<std::string> FetchJwksDocument(IssuerState& issuer);
  absl::StatusOr<VerifiedToken> VerifyUncached(std::string_view token, int64_t now,
                                               int64_t* valid_until);
  // The JWS checks both kinds share: header (RFC 7515 4.1), trusted issuer, key and signature.
  // Fills `payload` and returns the issuer; error codes as VerifySecurityEvent's.
  absl::StatusOr<IssuerState*> VerifySigned(std::string_view token, TokenKind kind, int64_t now,
                                            nlohmann::json* payload);

  const VerifierConfig config_;
  const std::unique_ptr<HttpFetcher> fetcher_;
  const std::function<int64_t()> now_unix_;
  std::vector<std::unique_ptr<IssuerState>> issuers_;  // fixed after construction
  VerifiedTokenCache verified_cache_;
};

}  // namespace pgward::identity
