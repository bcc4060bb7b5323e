// Token introspection (RFC 7662): see introspector.h.
#include "gateway/identity/introspector.h"

#include <openssl/sha.h>

#include <ctime>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/identity/token_claims.h"

namespace pgward::identity {
namespace {

using Json = nlohmann::json;

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

// application/x-www-form-urlencoded value (RFC 6749 appendix B).
std::string FormValue(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace

bool LooksLikeJwt(std::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(absl::string_view(token.data(), token.size()), '.');
  return parts.size() == 3 && !parts[0].empty() && !parts[1].empty();
}

Introspector::Introspector(IntrospectionConfig config, HttpFetcher& fetcher, std::function<int64_t()> now_unix)
    : config_(std::move(config)),
      fetcher_(fetcher),
      now_unix_(now_unix ? std::move(now_unix) : [] { return static_cast<int64_t>(std::time(nullptr)); }) {}

absl::Status Introspector::Start() {
  std::string issuer = config_.issuer;
  while (!issuer.empty() && issuer.back() == '/') issuer.pop_back();
  const std::string url = issuer + "/.well-known/openid-configuration";
  auto body = fetcher_.Get(url);
  if (!body.ok()) return absl::UnavailableError(absl::StrCat("introspection discovery: ", body.status().message()));
  Json doc = Json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::UnavailableError(absl::StrCat(url, " is not a JSON object"));
  auto it = doc.find("introspection_endpoint");
  if (it == doc.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the issuer ", config_.issuer, " names no introspection_endpoint in its discovery document"));
  }
  endpoint_ = it->get<std::string>();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<VerifiedToken>> Introspector::Introspect(std::string_view token, bool use_cache) {
  const std::string key = Sha256(token);
  const int64_t now = now_unix_();
  if (use_cache) {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.until > now) return it->second.answer;
  }
  auto answer = Ask(token);
  // Only the IdP's answers are kept; an IdP that could not be asked is asked again next time.
  if (!absl::IsUnavailable(answer.status())) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= config_.max_cached) {
      for (auto it = cache_.begin(); it != cache_.end();) {
        if (it->second.until <= now) {
          cache_.erase(it++);
        } else {
          ++it;
        }
      }
      if (cache_.size() >= config_.max_cached) cache_.clear();
    }
    cache_[key] = Cached{now + config_.cache_ttl.count(), answer};
  }
  return answer;
}

absl::StatusOr<std::optional<VerifiedToken>> Introspector::Ask(std::string_view token) {
  if (endpoint_.empty()) {
    if (absl::Status s = Start(); !s.ok()) return absl::UnavailableError(s.message());
  }
  const std::string form = absl::StrCat("token=", FormValue(token), "&token_type_hint=access_token");
  auto body = fetcher_.PostForm(endpoint_, form, config_.client_id, config_.client_secret);
  if (!body.ok()) return absl::UnavailableError(absl::StrCat("introspection: ", body.status().message()));
  Json doc = Json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::UnavailableError("introspection: the response is not a JSON object");
  auto active = doc.find("active");
  if (active == doc.end() || !active->is_boolean()) {
    return absl::UnavailableError("introspection: the response has no boolean \"active\"");
  }
  if (!active->get<bool>()) return std::optional<VerifiedToken>();
  // RFC 7662 2.2: iss is optional; when given it must be ours.
  if (auto iss = doc.find("iss"); iss != doc.end() && (!iss->is_string() || iss->get_ref<const std::string&>() != config_.issuer)) {
    return absl::UnauthenticatedError("introspection: the token's issuer is not the trusted one");
  }
  ClaimRules rules;
  rules.issuer = config_.issuer;
  rules.audiences = &config_.audiences;
  rules.principal_claim = config_.principal_claim;
  rules.principal_fallback_claim = "client_id";
  rules.groups_claim = config_.groups_claim;
  rules.leeway_seconds = config_.leeway_seconds;
  int64_t valid_until = 0;
  auto verified = VerifiedFromClaims(doc, rules, now_unix_(), &valid_until);
  if (!verified.ok()) return verified.status();
  return std::optional<VerifiedToken>(*std::move(verified));
}

absl::StatusOr<VerifiedToken> Authenticate(TokenVerifier& verifier, Introspector* introspector, std::string_view token) {
  if (introspector == nullptr) return verifier.Verify(token);
  if (!LooksLikeJwt(token)) {
    auto answer = introspector->Introspect(token, /*use_cache=*/true);
    if (!answer.ok()) return answer.status().code() == absl::StatusCode::kPermissionDenied
                                 ? answer.status()
                                 : absl::UnauthenticatedError(answer.status().message());
    if (!answer->has_value()) return absl::UnauthenticatedError("token not active (introspection)");
    return **answer;
  }
  auto verified = verifier.Verify(token);
  if (!verified.ok()) return verified;
  auto answer = introspector->Introspect(token, /*use_cache=*/true);
  // Fail closed at login: an IdP that cannot confirm the token does not let it in.
  if (!answer.ok()) return absl::UnauthenticatedError(answer.status().message());
  if (!answer->has_value()) return absl::UnauthenticatedError("token not active (introspection): revoked at the IdP");
  return verified;
}

}  // namespace pgward::identity
