// Random bytes and identifiers from OpenSSL's CSPRNG.
#include "common/crypto/random.h"

#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/crypto/encoding.h"

namespace pgward::crypto {

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n == 0) return out;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // "Cannot happen" on a working system; continuing would hand out predictable nonces and keys.
    std::fputs("pgward: RAND_bytes failed; the CSPRNG is unusable, aborting\n", stderr);
    std::abort();
  }
  return out;
}

uint32_t RandomUint32() {
  std::string bytes = RandomBytes(sizeof(uint32_t));
  uint32_t v;
  std::memcpy(&v, bytes.data(), sizeof(v));
  return v;
}

std::string RandomToken(size_t bytes) { return Base64UrlEncode(RandomBytes(bytes)); }

std::string NewSessionId() { return HexEncode(RandomBytes(16)); }

}  // namespace pgward::crypto
