// One issuer's signing keys, parsed from a JWKS document (RFC 7517) into OpenSSL keys, looked up by kid.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "gateway/identity/jws.h"

namespace pgward::identity {

// A public verification key from a JWK. Immutable once built.
struct JsonWebKey {
  std::string kid;  // may be empty: RFC 7517 4.5 makes "kid" optional
  std::string kty;  // "RSA" or "EC"
  std::string crv;  // "P-256" / "P-384" for EC keys, empty for RSA
  std::string alg;  // optional JWK "alg"; when present it must equal the token's alg
  std::shared_ptr<EVP_PKEY> pkey;

  // Whether this key may verify a token signed with `alg` (kty, crv and the JWK's own alg agree).
  bool CompatibleWith(JwsAlgorithm alg) const;
};

// A snapshot of a key set. Built once by LoadJwks and then only read, so a TokenVerifier can
// share it between threads and swap in a new snapshot on refresh.
class JwksCache {
 public:
  // Parses a JWKS document. Keys this implementation cannot use (other kty/crv, "use" other
  // than "sig", RSA under 2048 bits, EC points not on the curve) are skipped; a document with
  // no usable key, or that is not a JWKS, is an error.
  absl::Status LoadJwks(std::string_view json);

  // The key for a token's kid that can verify `alg`, or null. An empty kid matches only when
  // the set holds exactly one key (RFC 7515 4.1.4 leaves kid optional).
  std::shared_ptr<const JsonWebKey> Find(std::string_view kid, JwsAlgorithm alg) const;

  bool Contains(std::string_view kid) const {
    return keys_by_kid_.contains(absl::string_view(kid.data(), kid.size()));
  }
  size_t size() const { return key_count_; }

 private:
  absl::flat_hash_map<std::string, std::vector<std::shared_ptr<const JsonWebKey>>> keys_by_kid_;
  size_t key_count_ = 0;
};

}  // namespace pgward::identity
