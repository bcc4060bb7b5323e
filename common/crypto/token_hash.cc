// SHA-256 / HMAC-SHA-256 over OpenSSL 3 EVP, token hashing and constant-time comparison.
#include "common/crypto/token_hash.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>  // EVP_Digest, EVP_Q_mac

#include <cstdio>
#include <cstdlib>

#include "common/crypto/encoding.h"

namespace pgward::crypto {

std::string Sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &len,
                 EVP_sha256(), nullptr) != 1 ||
      len != 32) {
    // Only fails on allocation failure or a broken provider setup.
    std::fputs("pgward: EVP_Digest(SHA-256) failed, aborting\n", stderr);
    std::abort();
  }
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::string out(32, '\0');
  size_t len = 0;
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                reinterpret_cast<unsigned char*>(out.data()), out.size(), &len) == nullptr ||
      len != 32) {
    std::fputs("pgward: HMAC-SHA-256 failed, aborting\n", stderr);
    std::abort();
  }
  return out;
}

std::string HashToken(std::string_view token) { return "sha256:" + HexEncode(Sha256(token)); }

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace pgward::crypto
