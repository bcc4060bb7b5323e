// Tests for SHA-256, HMAC-SHA-256, token hashing and constant-time comparison.
#include "common/crypto/token_hash.h"

#include <catch2/catch.hpp>

#include <string>

#include "common/crypto/encoding.h"

namespace pgward::crypto {
namespace {

TEST_CASE("Sha256 matches the FIPS 180-2 abc vector", "[hash]") {
  CHECK(HexEncode(Sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(Sha256("").size() == 32);
}

TEST_CASE("HmacSha256 matches RFC 4231 test case 2", "[hash]") {
  CHECK(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("HashToken prefixes the algorithm and hex digest", "[hash]") {
  CHECK(HashToken("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(HashToken("a") != HashToken("b"));
}

TEST_CASE("ConstantTimeEquals compares content and length", "[hash]") {
  CHECK(ConstantTimeEquals("", ""));
  CHECK(ConstantTimeEquals("secret", "secret"));
  CHECK_FALSE(ConstantTimeEquals("secret", "secreT"));
  CHECK_FALSE(ConstantTimeEquals("secret", "secret2"));
  CHECK_FALSE(ConstantTimeEquals("", "x"));
  CHECK(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0b", 3)));
  CHECK_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

}  // namespace
}  // namespace pgward::crypto
