// The claims every access token must carry, checked the same way whether they came from a
// verified JWT (token_verifier) or from the identity provider's introspection response
// (introspector): exp/nbf, audience, principal and groups.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "gateway/identity/verified_token.h"

namespace pgward::identity {

// RFC 7519 2: NumericDate is a JSON number of seconds, possibly non-integer; clamped so
// exp + leeway cannot overflow.
std::optional<int64_t> NumericDate(const nlohmann::json& value);
// RFC 7519 4.1.3: "aud" is a string or an array of strings; true if it holds one of `audiences`.
bool AudienceMatches(const nlohmann::json& claims, const std::vector<std::string>& audiences);
// Groups may be an array of strings or one string. Anything else yields no groups: a malformed
// claim can only cost the caller access, never grant it. Empty names are skipped.
std::vector<std::string> Groups(const nlohmann::json& claims, const std::string& claim);

struct ClaimRules {
  std::string issuer;                                // becomes VerifiedToken::issuer
  const std::vector<std::string>* audiences = nullptr;
  std::string principal_claim = "sub";
  // Used when principal_claim is absent (introspection of client-credentials tokens names the
  // client in client_id and may carry no sub); empty: none.
  std::string principal_fallback_claim;
  std::string groups_claim = "groups";
  int64_t leeway_seconds = 60;
};

// Unauthenticated with a reason for logs ("token expired", "audience mismatch", ...);
// PermissionDenied (safe to show) for a principal or group name pgward does not accept.
// `*valid_until`: exp + leeway.
absl::StatusOr<VerifiedToken> VerifiedFromClaims(const nlohmann::json& claims, const ClaimRules& rules, int64_t now,
                                                 int64_t* valid_until);

}  // namespace pgward::identity
