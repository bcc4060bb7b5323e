// Token introspection (RFC 7662) against the trusted issuer, with the gateway's own client
// credentials: whether the identity provider still considers a token active. It checks opaque
// access tokens (whose claims come from the response) and, when on, JWTs after their signature
// (so a token revoked at the IdP stops working before it expires).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/identity/http_fetcher.h"
#include "gateway/identity/token_verifier.h"
#include "gateway/identity/verified_token.h"

namespace pgward::identity {

struct IntrospectionConfig {
  std::string issuer;                  // the single trusted issuer; its discovery names the endpoint
  std::vector<std::string> audiences;  // the response's aud must hold one
  std::string client_id;               // the gateway's own client at the IdP
  std::string client_secret;
  std::string principal_claim = "sub";  // falls back to client_id (client-credentials tokens)
  std::string groups_claim = "groups";
  int64_t leeway_seconds = 60;
  std::chrono::seconds cache_ttl{10};  // how long an answer is reused at login
  size_t max_cached = 10000;
};

class Introspector {
 public:
  Introspector(IntrospectionConfig config, HttpFetcher& fetcher, std::function<int64_t()> now_unix = nullptr);

  // Discovery: the issuer's introspection_endpoint. The error says what is missing.
  absl::Status Start();
  const std::string& endpoint() const { return endpoint_; }

  // The identity the IdP vouches for, or nullopt when it says the token is not active.
  // Unavailable when the IdP cannot be asked or answers badly; Unauthenticated (reason for logs)
  // or PermissionDenied (safe to show) for an active token pgward does not accept (audience,
  // expiry, names). `use_cache`: an answer at most cache_ttl old may be reused. Thread-safe.
  absl::StatusOr<std::optional<VerifiedToken>> Introspect(std::string_view token, bool use_cache);

 private:
  struct Cached {
    int64_t until = 0;
    absl::StatusOr<std::optional<VerifiedToken>> answer;
  };
  absl::StatusOr<std::optional<VerifiedToken>> Ask(std::string_view token);

  const IntrospectionConfig config_;
  HttpFetcher& fetcher_;
  const std::function<int64_t()> now_unix_;
  std::string endpoint_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);  // by SHA-256 of the token
};

// True when `token` has the shape of a JWS compact serialization (three base64url parts).
bool LooksLikeJwt(std::string_view token);

// How a login's token is checked: a JWT by its signature (`verifier`), then, with an
// introspector, also by the IdP's word that it is active; an opaque token only by
// introspection (without one it is refused). Errors as TokenVerifier::Verify.
absl::StatusOr<VerifiedToken> Authenticate(TokenVerifier& verifier, Introspector* introspector, std::string_view token);

}  // namespace pgward::identity
