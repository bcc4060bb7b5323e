// One issuer's signing keys, parsed from a JWKS document (RFC 7517) into OpenSSL keys, looked up by kid.
#include "gateway/identity/jwks_cache.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace pgward::identity {
namespace {

using Json = nlohmann::json;

// NIST SP 800-131A: RSA keys below 2048 bits are not acceptable for signatures.
constexpr int kMinRsaBits = 2048;

std::shared_ptr<EVP_PKEY> WrapPkey(EVP_PKEY* pkey) { return std::shared_ptr<EVP_PKEY>(pkey, EVP_PKEY_free); }

absl::StatusOr<std::string> DecodedMember(const Json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string()) return absl::InvalidArgumentError(absl::StrCat("missing ", name));
  auto decoded = Base64UrlDecode(it->get_ref<const std::string&>());
  if (!decoded.ok() || decoded->empty()) return absl::InvalidArgumentError(absl::StrCat("bad ", name));
  return decoded;
}

// Builds an EVP_PKEY from raw OSSL_PARAMs (OpenSSL 3 provider API).
std::shared_ptr<EVP_PKEY> PkeyFromParams(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* pkey = nullptr;
  if (params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1) {
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) pkey = nullptr;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return pkey == nullptr ? nullptr : WrapPkey(pkey);
}

// RFC 7518 6.3.1: "n" and "e" are unsigned big-endian integers.
absl::StatusOr<std::shared_ptr<EVP_PKEY>> RsaKey(const Json& jwk) {
  auto n = DecodedMember(jwk, "n");
  if (!n.ok()) return n.status();
  auto e = DecodedMember(jwk, "e");
  if (!e.ok()) return e.status();
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  std::shared_ptr<EVP_PKEY> pkey;
  if (bn_n != nullptr && bn_e != nullptr && bld != nullptr &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1) {
    pkey = PkeyFromParams("RSA", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  if (pkey == nullptr) return absl::InvalidArgumentError("RSA key rejected by OpenSSL");
  if (EVP_PKEY_get_bits(pkey.get()) < kMinRsaBits) return absl::InvalidArgumentError("RSA key under 2048 bits");
  return pkey;
}

// RFC 7518 6.2.1: "x" and "y" are full-width coordinates; OpenSSL takes the uncompressed point 04||x||y.
absl::StatusOr<std::shared_ptr<EVP_PKEY>> EcKey(const Json& jwk, const std::string& crv) {
  size_t width = 0;
  const char* group = nullptr;
  if (crv == "P-256") {
    width = 32;
    group = "P-256";
  } else if (crv == "P-384") {
    width = 48;
    group = "P-384";
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported curve ", crv));
  }
  auto x = DecodedMember(jwk, "x");
  if (!x.ok()) return x.status();
  auto y = DecodedMember(jwk, "y");
  if (!y.ok()) return y.status();
  if (x->size() != width || y->size() != width) return absl::InvalidArgumentError("bad EC coordinate length");
  std::string point = absl::StrCat("\x04", *x, *y);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  std::shared_ptr<EVP_PKEY> pkey;
  if (bld != nullptr && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1) {
    pkey = PkeyFromParams("EC", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  if (pkey == nullptr) return absl::InvalidArgumentError("EC key rejected by OpenSSL");
  // Invalid-curve attacks: make sure the point really lies on the named curve.
  EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr);
  const bool on_curve = check != nullptr && EVP_PKEY_public_check(check) == 1;
  EVP_PKEY_CTX_free(check);
  if (!on_curve) return absl::InvalidArgumentError("EC point not on curve");
  return pkey;
}

absl::StatusOr<JsonWebKey> ParseJwk(const Json& jwk) {
  if (!jwk.is_object()) return absl::InvalidArgumentError("key is not an object");
  JsonWebKey key;
  auto str = [&jwk](const char* name) -> std::string {
    auto it = jwk.find(name);
    return it != jwk.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  key.kid = str("kid");
  key.kty = str("kty");
  key.alg = str("alg");
  // RFC 7517 4.2: a key marked for encryption must not verify signatures.
  if (const std::string use = str("use"); !use.empty() && use != "sig") {
    return absl::InvalidArgumentError(absl::StrCat("use ", use));
  }
  absl::StatusOr<std::shared_ptr<EVP_PKEY>> pkey;
  if (key.kty == "RSA") {
    pkey = RsaKey(jwk);
  } else if (key.kty == "EC") {
    key.crv = str("crv");
    pkey = EcKey(jwk, key.crv);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported kty '", key.kty, "'"));
  }
  if (!pkey.ok()) return pkey.status();
  key.pkey = *std::move(pkey);
  return key;
}

}  // namespace

bool JsonWebKey::CompatibleWith(JwsAlgorithm jws_alg) const {
  if (!alg.empty() && alg != JwsAlgorithmName(jws_alg)) return false;
  switch (jws_alg) {
    case JwsAlgorithm::kRS256:
    case JwsAlgorithm::kRS384:
    case JwsAlgorithm::kRS512:
    case JwsAlgorithm::kPS256:
      return kty == "RSA";
    case JwsAlgorithm::kES256:
      return kty == "EC" && crv == "P-256";
    case JwsAlgorithm::kES384:
      return kty == "EC" && crv == "P-384";
  }
  return false;
}

absl::Status JwksCache::LoadJwks(std::string_view json) {
  Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("JWKS is not a JSON object");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  keys_by_kid_.clear();
  key_count_ = 0;
  for (const Json& entry : *keys) {
    absl::StatusOr<JsonWebKey> key;
    try {
      key = ParseJwk(entry);
    } catch (const Json::exception& e) {
      key = absl::InvalidArgumentError(e.what());
    }
    if (!key.ok()) {
      ERR_clear_error();
      Log(LogLevel::kWarn, "identity", "skipping JWK: ", key.status().message());
      continue;
    }
    std::string kid = key->kid;
    keys_by_kid_[kid].push_back(std::make_shared<const JsonWebKey>(*std::move(key)));
    ++key_count_;
  }
  if (key_count_ == 0) return absl::InvalidArgumentError("JWKS holds no usable signing key");
  return absl::OkStatus();
}

std::shared_ptr<const JsonWebKey> JwksCache::Find(std::string_view kid, JwsAlgorithm alg) const {
  if (kid.empty()) {
    // RFC 7515 4.1.4: without a kid the verifier must pick the key some other way; with one key
    // there is no ambiguity, with several we refuse rather than try each.
    if (key_count_ != 1) return nullptr;
    const auto& only = keys_by_kid_.begin()->second.front();
    return only->CompatibleWith(alg) ? only : nullptr;
  }
  auto it = keys_by_kid_.find(absl::string_view(kid.data(), kid.size()));
  if (it == keys_by_kid_.end()) return nullptr;
  for (const auto& key : it->second) {
    if (key->CompatibleWith(alg)) return key;
  }
  return nullptr;
}

}  // namespace pgward::identity
