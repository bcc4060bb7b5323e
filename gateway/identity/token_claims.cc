// Access-token claim checks shared by JWT verification and introspection: see token_claims.h.
#include "gateway/identity/token_claims.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "gateway/identity/identity_name.h"

namespace pgward::identity {
namespace {

using Json = nlohmann::json;

constexpr int64_t kMaxNumericDate = int64_t{1} << 52;

absl::Status Refused(const char* reason) { return absl::UnauthenticatedError(reason); }

}  // namespace

std::optional<int64_t> NumericDate(const Json& value) {
  if (value.is_number_unsigned()) return static_cast<int64_t>(std::min<uint64_t>(value.get<uint64_t>(), kMaxNumericDate));
  if (value.is_number_integer()) return std::clamp<int64_t>(value.get<int64_t>(), -kMaxNumericDate, kMaxNumericDate);
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (!std::isfinite(d)) return std::nullopt;
    return static_cast<int64_t>(std::floor(std::clamp<double>(d, -kMaxNumericDate, kMaxNumericDate)));
  }
  return std::nullopt;
}

bool AudienceMatches(const Json& payload, const std::vector<std::string>& audiences) {
  auto it = payload.find("aud");
  if (it == payload.end()) return false;
  auto matches = [&audiences](const Json& v) {
    if (!v.is_string()) return false;
    for (const auto& want : audiences) {
      if (v.get_ref<const std::string&>() == want) return true;
    }
    return false;
  };
  if (it->is_array()) {
    for (const Json& v : *it) {
      if (matches(v)) return true;
    }
    return false;
  }
  return matches(*it);
}

std::vector<std::string> Groups(const Json& payload, const std::string& claim) {
  std::vector<std::string> groups;
  auto it = payload.find(claim);
  if (it == payload.end()) return groups;
  if (it->is_string()) {
    if (!it->get_ref<const std::string&>().empty()) groups.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    for (const Json& v : *it) {
      if (v.is_string() && !v.get_ref<const std::string&>().empty()) groups.push_back(v.get<std::string>());
    }
  }
  return groups;
}

absl::StatusOr<VerifiedToken> VerifiedFromClaims(const Json& claims, const ClaimRules& rules, int64_t now,
                                                 int64_t* valid_until) {
  // RFC 7519 4.1, each with the configured leeway for clock skew.
  auto exp_it = claims.find("exp");
  std::optional<int64_t> exp = exp_it == claims.end() ? std::nullopt : NumericDate(*exp_it);
  if (!exp) return Refused("exp missing");
  if (now > *exp + rules.leeway_seconds) return Refused("token expired");
  if (auto nbf_it = claims.find("nbf"); nbf_it != claims.end()) {
    std::optional<int64_t> nbf = NumericDate(*nbf_it);
    if (!nbf) return Refused("malformed nbf");
    if (*nbf - rules.leeway_seconds > now) return Refused("token not yet valid");
  }
  if (rules.audiences == nullptr || !AudienceMatches(claims, *rules.audiences)) return Refused("audience mismatch");

  VerifiedToken verified;
  verified.issuer = rules.issuer;
  std::string principal_claim = rules.principal_claim;
  auto principal_it = claims.find(principal_claim);
  if (principal_it == claims.end() && !rules.principal_fallback_claim.empty()) {
    principal_claim = rules.principal_fallback_claim;
    principal_it = claims.find(principal_claim);
  }
  if (principal_it == claims.end() || !principal_it->is_string() || principal_it->get_ref<const std::string&>().empty()) {
    return Refused("principal claim missing");
  }
  verified.principal = principal_it->get<std::string>();
  // A genuine token may still carry a name we will not put into logs, audit rows and Postgres
  // settings. Saying why is safe at this point and tells the token's owner what to fix; the
  // name itself is never echoed.
  if (absl::Status name = CheckIdentityName(verified.principal); !name.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the token's principal name (claim \"", principal_claim, "\") ", name.message()));
  }
  if (auto sub_it = claims.find("sub"); sub_it != claims.end() && sub_it->is_string()) {
    verified.subject = sub_it->get<std::string>();
  }
  verified.groups = Groups(claims, rules.groups_claim);
  for (const std::string& group : verified.groups) {
    if (absl::Status name = CheckIdentityName(group); !name.ok()) {
      return absl::PermissionDeniedError(absl::StrCat("a group name in the token (claim \"", rules.groups_claim,
                                                      "\") ", name.message()));
    }
  }
  verified.expires_unix = *exp;
  // Only compared with the identity provider's revocation cut-offs (gateway/events): a token
  // without a usable iat counts as older than any of them, and one dated in the future (an
  // IdP clock ahead of ours) as issued now, so it cannot outlive a cut-off made now.
  if (auto iat_it = claims.find("iat"); iat_it != claims.end()) {
    verified.issued_unix = std::min(NumericDate(*iat_it).value_or(0), now);
  }
  *valid_until = *exp + rules.leeway_seconds;
  return verified;
}

}  // namespace pgward::identity
