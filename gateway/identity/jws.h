// JWS compact serialization (RFC 7515 3.1): split, base64url-decode, and check a signature with OpenSSL.
#pragma once

#include <openssl/evp.h>

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgward::identity {

// The asymmetric algorithms of RFC 7518 3.1 that pgward accepts. HMAC and "none" are absent on
// purpose: a shared-secret or unsigned token proves nothing about the issuer.
enum class JwsAlgorithm { kRS256, kRS384, kRS512, kPS256, kES256, kES384 };

std::optional<JwsAlgorithm> JwsAlgorithmFromName(std::string_view name);
std::string_view JwsAlgorithmName(JwsAlgorithm alg);

// Strict base64url without padding (RFC 7515 2): any other character, or a length that cannot
// come from the encoder, is an error.
absl::StatusOr<std::string> Base64UrlDecode(std::string_view in);
std::string Base64UrlEncode(std::string_view in);

// The three parts of a compact JWS, still encoded except for the signature.
struct CompactJws {
  std::string_view signing_input;    // "header.payload", the bytes the signature covers
  std::string_view header_b64;
  std::string_view payload_b64;
  std::string signature;             // decoded
};

// Splits "header.payload.signature". Five-part JWE tokens and anything else are an error.
absl::StatusOr<CompactJws> SplitCompactJws(std::string_view token);

// True when `signature` over `signing_input` verifies with `key` under `alg`. ECDSA signatures
// arrive as JOSE r||s (RFC 7518 3.4) and are converted to DER for OpenSSL; PS256 uses a salt
// as long as the hash (RFC 7518 3.5).
bool VerifyJwsSignature(JwsAlgorithm alg, EVP_PKEY* key, std::string_view signing_input,
                        std::string_view signature);

}  // namespace pgward::identity
