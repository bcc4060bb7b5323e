// JWS compact serialization (RFC 7515 3.1): split, base64url-decode, and check a signature with OpenSSL.
#include "gateway/identity/jws.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include <array>
#include <memory>

#include "absl/status/status.h"

namespace pgward::identity {
namespace {

constexpr std::string_view kBase64UrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int Base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

const EVP_MD* DigestFor(JwsAlgorithm alg) {
  switch (alg) {
    case JwsAlgorithm::kRS256:
    case JwsAlgorithm::kPS256:
    case JwsAlgorithm::kES256:
      return EVP_sha256();
    case JwsAlgorithm::kRS384:
    case JwsAlgorithm::kES384:
      return EVP_sha384();
    case JwsAlgorithm::kRS512:
      return EVP_sha512();
  }
  return nullptr;
}

// RFC 7518 3.4: the JWS signature is the fixed-width big-endian R followed by S. OpenSSL wants
// a DER ECDSA-Sig-Value, so rebuild one. A wrong length means a forged or foreign signature.
bool JoseEcdsaToDer(std::string_view jose, size_t coordinate_bytes, std::string* der) {
  if (jose.size() != 2 * coordinate_bytes) return false;
  const auto* bytes = reinterpret_cast<const unsigned char*>(jose.data());
  BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(coordinate_bytes), nullptr);
  BIGNUM* s = BN_bin2bn(bytes + coordinate_bytes, static_cast<int>(coordinate_bytes), nullptr);
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  if (r == nullptr || s == nullptr || sig == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  unsigned char* out = nullptr;
  const int len = i2d_ECDSA_SIG(sig.get(), &out);
  if (len <= 0) return false;
  der->assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return true;
}

}  // namespace

std::optional<JwsAlgorithm> JwsAlgorithmFromName(std::string_view name) {
  // Algorithm names are case-sensitive (RFC 7515 4.1.1).
  if (name == "RS256") return JwsAlgorithm::kRS256;
  if (name == "RS384") return JwsAlgorithm::kRS384;
  if (name == "RS512") return JwsAlgorithm::kRS512;
  if (name == "PS256") return JwsAlgorithm::kPS256;
  if (name == "ES256") return JwsAlgorithm::kES256;
  if (name == "ES384") return JwsAlgorithm::kES384;
  return std::nullopt;
}

std::string_view JwsAlgorithmName(JwsAlgorithm alg) {
  switch (alg) {
    case JwsAlgorithm::kRS256: return "RS256";
    case JwsAlgorithm::kRS384: return "RS384";
    case JwsAlgorithm::kRS512: return "RS512";
    case JwsAlgorithm::kPS256: return "PS256";
    case JwsAlgorithm::kES256: return "ES256";
    case JwsAlgorithm::kES384: return "ES384";
  }
  return "?";
}

absl::StatusOr<std::string> Base64UrlDecode(std::string_view in) {
  // A lone trailing character carries only 6 bits, never a whole byte.
  if (in.size() % 4 == 1) return absl::InvalidArgumentError("bad base64url length");
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : in) {
    const int v = Base64UrlValue(c);
    if (v < 0) return absl::InvalidArgumentError("bad base64url character");
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero so every token has exactly one encoding.
  if ((buffer & ((1u << bits) - 1)) != 0) return absl::InvalidArgumentError("non-canonical base64url");
  return out;
}

std::string Base64UrlEncode(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : in) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kBase64UrlAlphabet[(buffer >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kBase64UrlAlphabet[(buffer << (6 - bits)) & 0x3f]);
  return out;
}

absl::StatusOr<CompactJws> SplitCompactJws(std::string_view token) {
  const size_t first = token.find('.');
  if (first == std::string_view::npos) return absl::InvalidArgumentError("not a compact JWS");
  const size_t second = token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError("not a three-part compact JWS");
  }
  CompactJws jws;
  jws.header_b64 = token.substr(0, first);
  jws.payload_b64 = token.substr(first + 1, second - first - 1);
  jws.signing_input = token.substr(0, second);
  if (jws.header_b64.empty() || jws.payload_b64.empty()) {
    return absl::InvalidArgumentError("empty JWS part");
  }
  auto signature = Base64UrlDecode(token.substr(second + 1));
  if (!signature.ok()) return signature.status();
  if (signature->empty()) return absl::InvalidArgumentError("empty JWS signature");
  jws.signature = *std::move(signature);
  return jws;
}

bool VerifyJwsSignature(JwsAlgorithm alg, EVP_PKEY* key, std::string_view signing_input,
                        std::string_view signature) {
  if (key == nullptr) return false;
  std::string der;
  if (alg == JwsAlgorithm::kES256 || alg == JwsAlgorithm::kES384) {
    if (!JoseEcdsaToDer(signature, alg == JwsAlgorithm::kES256 ? 32 : 48, &der)) return false;
    signature = der;
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (ctx == nullptr) return false;
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, DigestFor(alg), nullptr, key) != 1) {
    ERR_clear_error();
    return false;
  }
  if (alg == JwsAlgorithm::kPS256) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1) {
      ERR_clear_error();
      return false;
    }
  }
  const bool ok =
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(signing_input.data()),
                       signing_input.size()) == 1;
  // A failed check leaves entries on this thread's OpenSSL error queue; other code reading
  // that queue later (TLS) must not see them.
  if (!ok) ERR_clear_error();
  return ok;
}

}  // namespace pgward::identity
