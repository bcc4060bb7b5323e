// Verifies OIDC access tokens from the configured trusted issuers (ARCHITECTURE.md section 2).
#include "gateway/identity/token_verifier.h"

#include <cmath>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/util/log.h"
#include "gateway/identity/identity_name.h"
#include "gateway/identity/jws.h"
#include "gateway/identity/token_claims.h"

namespace pgward::identity {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxJwksFileBytes = 1 << 20;

absl::Status Refused(const char* reason) { return absl::UnauthenticatedError(reason); }

std::optional<Json> DecodeJsonObject(std::string_view b64) {
  auto raw = Base64UrlDecode(b64);
  if (!raw.ok()) return std::nullopt;
  Json doc = Json::parse(*raw, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  return doc;
}

// RFC 9068 2.1 uses "at+jwt"; RFC 7515 4.1.9 says the "application/" prefix may be present
// and media types compare case-insensitively.
bool AcceptableTyp(const Json& header) {
  auto it = header.find("typ");
  if (it == header.end()) return true;
  if (!it->is_string()) return false;
  const std::string typ = absl::AsciiStrToLower(it->get_ref<const std::string&>());
  return typ == "jwt" || typ == "at+jwt" || typ == "application/at+jwt";
}

// RFC 8417 2.3: "secevent+jwt", with the optional "application/" prefix, in any case. Required:
// without it an access token or ID token could be replayed as an event.
bool SecurityEventTyp(const Json& header) {
  auto it = header.find("typ");
  if (it == header.end() || !it->is_string()) return false;
  const std::string typ = absl::AsciiStrToLower(it->get_ref<const std::string&>());
  return typ == "secevent+jwt" || typ == "application/secevent+jwt";
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open JWKS file ", path));
  std::string data(kMaxJwksFileBytes + 1, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  if (in.bad()) return absl::UnavailableError(absl::StrCat("cannot read JWKS file ", path));
  data.resize(static_cast<size_t>(in.gcount()));
  if (data.size() > kMaxJwksFileBytes) return absl::ResourceExhaustedError(absl::StrCat("JWKS file ", path, " over 1 MiB"));
  return data;
}

}  // namespace

struct TokenVerifier::IssuerState {
  explicit IssuerState(IssuerConfig c) : config(std::move(c)) {}

  const IssuerConfig config;
  // Serialises network refreshes for this issuer. Never taken while holding `mu`.
  absl::Mutex fetch_mu;
  std::string jwks_uri ABSL_GUARDED_BY(fetch_mu);  // from discovery, kept across refreshes

  absl::Mutex mu;
  std::shared_ptr<const JwksCache> keys ABSL_GUARDED_BY(mu);  // null until the first good fetch
  bool fetched ABSL_GUARDED_BY(mu) = false;                   // any attempt made yet
  int64_t last_fetch_unix ABSL_GUARDED_BY(mu) = 0;            // last attempt, good or bad
  int64_t last_unknown_kid_fetch_unix ABSL_GUARDED_BY(mu) = 0;
  bool unknown_kid_fetched ABSL_GUARDED_BY(mu) = false;
};

TokenVerifier::TokenVerifier(VerifierConfig config, std::unique_ptr<HttpFetcher> fetcher,
                             std::function<int64_t()> now_unix)
    : config_(std::move(config)),
      fetcher_(std::move(fetcher)),
      now_unix_(now_unix ? std::move(now_unix) : [] { return static_cast<int64_t>(std::time(nullptr)); }) {
  for (const IssuerConfig& issuer : config_.issuers) issuers_.push_back(std::make_unique<IssuerState>(issuer));
}

TokenVerifier::~TokenVerifier() = default;

absl::Status TokenVerifier::Start() {
  absl::Status first_error;
  const int64_t now = now_unix_();
  for (auto& issuer : issuers_) {
    absl::Status status;
    if (issuer->config.audiences.empty()) {
      // Without an audience every token the IdP issues for any service would be accepted.
      status = absl::InvalidArgumentError("no audience configured");
    } else {
      absl::MutexLock fetch_lock(&issuer->fetch_mu);
      status = Refresh(*issuer, now);
    }
    if (!status.ok() && first_error.ok()) {
      first_error = absl::Status(status.code(), absl::StrCat("issuer ", issuer->config.issuer_url, ": ", status.message()));
    }
  }
  return first_error;
}

TokenVerifier::IssuerState* TokenVerifier::FindIssuer(std::string_view iss) {
  for (auto& issuer : issuers_) {
    if (issuer->config.issuer_url == iss) return issuer.get();  // exact match, OIDC Core 3.1.3.7
  }
  return nullptr;
}

absl::StatusOr<std::string> TokenVerifier::FetchJwksDocument(IssuerState& issuer) {
  issuer.fetch_mu.AssertHeld();
  if (!issuer.config.jwks_file.empty()) return ReadSmallFile(issuer.config.jwks_file);
  if (fetcher_ == nullptr) return absl::FailedPreconditionError("no HTTP fetcher");
  const std::string& issuer_url = issuer.config.issuer_url;
  if (issuer.jwks_uri.empty()) {
    // OpenID Connect Discovery 1.0 section 4: strip one trailing slash, append the well-known path.
    std::string url(absl::StripSuffix(issuer_url, "/"));
    url += "/.well-known/openid-configuration";
    auto body = fetcher_->Get(url);
    if (!body.ok()) return absl::Status(body.status().code(), absl::StrCat("discovery failed: ", body.status().message()));
    Json doc = Json::parse(*body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("discovery document is not a JSON object");
    // Discovery 4.3: the document's issuer must be exactly the one we asked about.
    auto iss = doc.find("issuer");
    if (iss == doc.end() || !iss->is_string() || iss->get_ref<const std::string&>() != issuer_url) {
      return absl::InvalidArgumentError("discovery document names a different issuer");
    }
    auto uri = doc.find("jwks_uri");
    if (uri == doc.end() || !uri->is_string()) return absl::InvalidArgumentError("discovery document has no jwks_uri");
    const std::string& jwks_uri = uri->get_ref<const std::string&>();
    const bool https_issuer = absl::StartsWithIgnoreCase(issuer_url, "https://");
    if (!absl::StartsWithIgnoreCase(jwks_uri, "https://") &&
        (https_issuer || !absl::StartsWithIgnoreCase(jwks_uri, "http://"))) {
      return absl::InvalidArgumentError("jwks_uri must be https (or http for an http issuer)");
    }
    issuer.jwks_uri = jwks_uri;
  }
  auto body = fetcher_->Get(issuer.jwks_uri);
  if (!body.ok()) return absl::Status(body.status().code(), absl::StrCat("JWKS fetch failed: ", body.status().message()));
  return body;
}

absl::Status TokenVerifier::Refresh(IssuerState& issuer, int64_t now) {
  issuer.fetch_mu.AssertHeld();
  auto document = FetchJwksDocument(issuer);
  auto keys = std::make_shared<JwksCache>();
  absl::Status status = document.ok() ? keys->LoadJwks(*document) : document.status();
  absl::MutexLock lock(&issuer.mu);
  issuer.fetched = true;
  issuer.last_fetch_unix = now;
  if (!status.ok()) {
    // Keep serving the previous keys: an IdP outage must not lock every caller out.
    Log(LogLevel::kWarn, "identity", "issuer ", issuer.config.issuer_url, ": key refresh failed (",
        status.message(), "), keeping ", issuer.keys ? issuer.keys->size() : 0, " previous keys");
    return status;
  }
  Log(LogLevel::kInfo, "identity", "issuer ", issuer.config.issuer_url, ": loaded ", keys->size(), " keys");
  issuer.keys = std::move(keys);
  return absl::OkStatus();
}

std::shared_ptr<const JwksCache> TokenVerifier::CurrentKeys(IssuerState& issuer, int64_t now) {
  auto stale = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(issuer.mu) {
    // Retry a failed first load no faster than the unknown-kid rate limit.
    const int64_t interval = issuer.keys ? config_.jwks_refresh_seconds : config_.unknown_kid_min_interval_seconds;
    return !issuer.fetched || now - issuer.last_fetch_unix >= interval;
  };
  {
    absl::MutexLock lock(&issuer.mu);
    if (!stale()) return issuer.keys;
  }
  // One thread refreshes lazily; the others go on with the snapshot they have.
  if (issuer.fetch_mu.TryLock()) {
    bool still_stale;
    {
      absl::MutexLock lock(&issuer.mu);
      still_stale = stale();
    }
    if (still_stale) (void)Refresh(issuer, now);
    issuer.fetch_mu.Unlock();
  }
  absl::MutexLock lock(&issuer.mu);
  return issuer.keys;
}

std::shared_ptr<const JwksCache> TokenVerifier::RefreshForUnknownKid(IssuerState& issuer, std::string_view kid,
                                                                     int64_t now) {
  // Wait for any refresh in flight: it may already bring the new key.
  absl::MutexLock fetch_lock(&issuer.fetch_mu);
  {
    absl::MutexLock lock(&issuer.mu);
    if (issuer.keys && issuer.keys->Contains(kid)) return issuer.keys;
    // Tokens with random kids must not turn the gateway into a JWKS request amplifier.
    if (issuer.unknown_kid_fetched &&
        now - issuer.last_unknown_kid_fetch_unix < config_.unknown_kid_min_interval_seconds) {
      return issuer.keys;
    }
    issuer.unknown_kid_fetched = true;
    issuer.last_unknown_kid_fetch_unix = now;
  }
  (void)Refresh(issuer, now);
  absl::MutexLock lock(&issuer.mu);
  return issuer.keys;
}

absl::StatusOr<VerifiedToken> TokenVerifier::Verify(std::string_view token) {
  if (token.empty()) return Refused("token missing");
  if (token.size() > config_.max_token_bytes) return Refused("token too large");
  const int64_t now = now_unix_();
  if (auto cached = verified_cache_.Lookup(token, now)) return *std::move(cached);
  int64_t valid_until = 0;
  absl::StatusOr<VerifiedToken> verified;
  try {
    verified = VerifyUncached(token, now, &valid_until);
  } catch (const Json::exception&) {
    verified = Refused("malformed token");
  }
  if (verified.ok()) verified_cache_.Insert(token, *verified, valid_until, now);
  return verified;
}

absl::StatusOr<VerifiedToken> TokenVerifier::VerifyUncached(std::string_view token, int64_t now,
                                                            int64_t* valid_until) {
  Json payload;
  absl::StatusOr<IssuerState*> issuer = VerifySigned(token, TokenKind::kAccessToken, now, &payload);
  // Logins see one code for every reason (Verify's contract).
  if (!issuer.ok()) return absl::UnauthenticatedError(issuer.status().message());
  ClaimRules rules;
  rules.issuer = (*issuer)->config.issuer_url;
  rules.audiences = &(*issuer)->config.audiences;
  rules.principal_claim = config_.principal_claim;
  rules.groups_claim = config_.groups_claim;
  rules.leeway_seconds = config_.leeway_seconds;
  return VerifiedFromClaims(payload, rules, now, valid_until);
}

absl::StatusOr<VerifiedSecurityEvent> TokenVerifier::VerifySecurityEvent(std::string_view set) {
  if (set.empty()) return absl::InvalidArgumentError("empty body");
  if (set.size() > config_.max_token_bytes) return absl::InvalidArgumentError("token too large");
  Json payload;
  absl::StatusOr<IssuerState*> issuer;
  try {
    issuer = VerifySigned(set, TokenKind::kSecurityEvent, now_unix_(), &payload);
  } catch (const Json::exception&) {
    return absl::InvalidArgumentError("malformed token");
  }
  if (!issuer.ok()) return issuer.status();
  // RFC 8417 2.2: a SET's "aud" names its recipients; ours are the access tokens' audiences.
  if (!AudienceMatches(payload, (*issuer)->config.audiences)) return absl::PermissionDeniedError("audience mismatch");
  return VerifiedSecurityEvent{(*issuer)->config.issuer_url, payload.dump()};
}

absl::StatusOr<TokenVerifier::IssuerState*> TokenVerifier::VerifySigned(std::string_view token, TokenKind kind,
                                                                        int64_t now, Json* payload) {
  auto malformed = [](const char* reason) { return absl::InvalidArgumentError(reason); };
  auto jws = SplitCompactJws(token);
  if (!jws.ok()) return malformed("malformed token");
  std::optional<Json> header = DecodeJsonObject(jws->header_b64);
  if (!header) return malformed("malformed token header");

  // Header checks (RFC 7515 4.1). Reasons never echo header values: they are attacker input.
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) return malformed("malformed token: no alg");
  const std::string& alg_name = alg_it->get_ref<const std::string&>();
  if (absl::EqualsIgnoreCase(alg_name, "none")) return Refused("alg none refused");
  if (absl::StartsWithIgnoreCase(alg_name, "HS")) return Refused("HMAC algorithms refused");
  std::optional<JwsAlgorithm> alg = JwsAlgorithmFromName(alg_name);
  if (!alg) return Refused("unsupported alg");
  if (kind == TokenKind::kAccessToken ? !AcceptableTyp(*header) : !SecurityEventTyp(*header)) {
    return malformed("token typ refused");
  }
  // RFC 7515 4.1.11: we implement no header extensions, so any "crit" must be refused.
  if (header->contains("crit")) return Refused("crit header refused");
  std::string kid;
  if (auto kid_it = header->find("kid"); kid_it != header->end()) {
    if (!kid_it->is_string()) return malformed("malformed token: kid not a string");
    kid = kid_it->get<std::string>();
  }

  std::optional<Json> claims = DecodeJsonObject(jws->payload_b64);
  if (!claims) return malformed("malformed token payload");
  auto iss_it = claims->find("iss");
  if (iss_it == claims->end() || !iss_it->is_string()) return malformed("issuer missing");
  IssuerState* issuer = FindIssuer(iss_it->get_ref<const std::string&>());
  if (issuer == nullptr) return absl::NotFoundError("issuer not trusted");

  // Key selection and signature before any other claim is believed.
  std::shared_ptr<const JwksCache> keys = CurrentKeys(*issuer, now);
  if (keys == nullptr) return absl::UnavailableError("issuer keys unavailable");
  std::shared_ptr<const JsonWebKey> key = keys->Find(kid, *alg);
  if (key == nullptr) {
    if (kid.empty()) return Refused("missing kid and issuer has several keys");
    if (keys->Contains(kid)) return Refused("key for kid does not match alg");
    keys = RefreshForUnknownKid(*issuer, kid, now);
    if (keys != nullptr) key = keys->Find(kid, *alg);
    if (key == nullptr) return Refused("unknown kid after refresh");
  }
  if (!VerifyJwsSignature(*alg, key->pkey.get(), jws->signing_input, jws->signature)) {
    return Refused("bad signature");
  }
  *payload = *std::move(claims);
  return issuer;
}

}  // namespace pgward::identity
