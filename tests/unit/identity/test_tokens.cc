// Test-only signing keys and a token minter, so identity tests can build real JWKS and JWS values.
#include "tests/unit/identity/test_tokens.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>

#include <stdexcept>

#include "gateway/identity/jws.h"

namespace pgward::identity::testing {
namespace {

std::string BnBytes(const EVP_PKEY* pkey, const char* param, size_t width = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1) throw std::runtime_error("get_bn_param");
  const size_t len = width ? width : static_cast<size_t>(BN_num_bytes(bn));
  std::string out(len, '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(len));
  BN_free(bn);
  return out;
}

const EVP_MD* Digest(const std::string& alg) {
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  return EVP_sha256();
}

}  // namespace

TestKey::TestKey(std::string kid, EVP_PKEY* pkey, std::string curve)
    : kid_(std::move(kid)), pkey_(pkey, EVP_PKEY_free), curve_(std::move(curve)) {}

TestKey TestKey::Rsa(std::string kid, int bits) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
  if (pkey == nullptr) throw std::runtime_error("RSA keygen");
  return TestKey(std::move(kid), pkey, "");
}

TestKey TestKey::Ec(std::string kid, const std::string& curve) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve.c_str());
  if (pkey == nullptr) throw std::runtime_error("EC keygen");
  return TestKey(std::move(kid), pkey, curve);
}

nlohmann::json TestKey::Jwk(const std::string& alg) const {
  nlohmann::json jwk;
  if (curve_.empty()) {
    jwk = {{"kty", "RSA"}, {"n", Base64UrlEncode(BnBytes(pkey_.get(), OSSL_PKEY_PARAM_RSA_N))},
           {"e", Base64UrlEncode(BnBytes(pkey_.get(), OSSL_PKEY_PARAM_RSA_E))}};
  } else {
    const size_t width = curve_ == "P-256" ? 32 : 48;
    jwk = {{"kty", "EC"}, {"crv", curve_},
           {"x", Base64UrlEncode(BnBytes(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_X, width))},
           {"y", Base64UrlEncode(BnBytes(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, width))}};
  }
  jwk["use"] = "sig";
  if (!kid_.empty()) jwk["kid"] = kid_;
  if (!alg.empty()) jwk["alg"] = alg;
  return jwk;
}

std::string TestKey::Sign(const std::string& alg, const nlohmann::json& header,
                          const nlohmann::json& payload) const {
  const std::string input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(payload.dump());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestSignInit(ctx.get(), &pctx, Digest(alg), nullptr, pkey_.get()) != 1) throw std::runtime_error("sign init");
  if (alg.starts_with("PS")) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) throw std::runtime_error("sign size");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) != 1) {
    throw std::runtime_error("sign");
  }
  sig.resize(len);
  if (!curve_.empty()) {
    // OpenSSL produces DER; JOSE wants fixed-width r||s (RFC 7518 3.4).
    const size_t width = curve_ == "P-256" ? 32 : 48;
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* ecdsa = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    std::string jose(2 * width, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa), reinterpret_cast<unsigned char*>(jose.data()), static_cast<int>(width));
    BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa), reinterpret_cast<unsigned char*>(jose.data()) + width, static_cast<int>(width));
    ECDSA_SIG_free(ecdsa);
    sig = jose;
  }
  return input + "." + Base64UrlEncode(sig);
}

std::string TestKey::Mint(const std::string& alg, const nlohmann::json& payload) const {
  nlohmann::json header = {{"alg", alg}, {"typ", "at+jwt"}};
  if (!kid_.empty()) header["kid"] = kid_;
  return Sign(alg, header, payload);
}

std::string JwksOf(const std::vector<nlohmann::json>& jwks) {
  return nlohmann::json{{"keys", jwks}}.dump();
}

void FakeHttpFetcher::Set(const std::string& url, std::string body) {
  absl::MutexLock lock(&mu_);
  bodies_[url] = std::move(body);
}

void FakeHttpFetcher::Remove(const std::string& url) {
  absl::MutexLock lock(&mu_);
  bodies_.erase(url);
}

int FakeHttpFetcher::Count(const std::string& url) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(url);
  return it == counts_.end() ? 0 : it->second;
}

absl::StatusOr<std::string> FakeHttpFetcher::Get(const std::string& url) {
  absl::MutexLock lock(&mu_);
  ++counts_[url];
  auto it = bodies_.find(url);
  if (it == bodies_.end()) return absl::UnavailableError("GET " + url + ": HTTP status 404");
  return it->second;
}

}  // namespace pgward::identity::testing
