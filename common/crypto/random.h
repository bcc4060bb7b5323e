// Random bytes and identifiers from OpenSSL's CSPRNG (RAND_bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pgward::crypto {

// n bytes from RAND_bytes. Aborts if the CSPRNG fails: a gateway without randomness must not run.
std::string RandomBytes(size_t n);
uint32_t RandomUint32();
// `bytes` random bytes, base64url without padding (RFC 4648 section 5).
std::string RandomToken(size_t bytes = 32);
// 16 random bytes as 32 lowercase hex characters.
std::string NewSessionId();

}  // namespace pgward::crypto
