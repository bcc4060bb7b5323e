// JWS helpers and JWKS parsing: strict base64url, key parsing and key selection.
#include <catch2/catch.hpp>

#include "gateway/identity/jwks_cache.h"
#include "gateway/identity/jws.h"
#include "tests/unit/identity/test_tokens.h"

namespace pgward::identity {
namespace {

using nlohmann::json;
using testing::JwksOf;
using testing::TestKey;

TEST_CASE("base64url round-trips every length", "[identity]") {
  std::string data;
  for (int i = 0; i < 40; ++i) {
    auto decoded = Base64UrlDecode(Base64UrlEncode(data));
    REQUIRE(decoded.ok());
    CHECK(*decoded == data);
    data.push_back(static_cast<char>(i * 37));
  }
  CHECK(Base64UrlEncode("\xfb\xff") == "-_8");
}

TEST_CASE("base64url decoding is strict", "[identity]") {
  CHECK_FALSE(Base64UrlDecode("ab+c").ok());   // standard alphabet
  CHECK_FALSE(Base64UrlDecode("YQ==").ok());   // padding
  CHECK_FALSE(Base64UrlDecode("abcde").ok());  // impossible length
  CHECK_FALSE(Base64UrlDecode("YR").ok());     // non-zero leftover bits
  CHECK(Base64UrlDecode("YQ").ok());
}

TEST_CASE("JWKS parsing keeps usable signing keys and skips the rest", "[identity]") {
  static const TestKey rsa = TestKey::Rsa("r");
  static const TestKey ec = TestKey::Ec("e", "P-256");
  static const TestKey small = TestKey::Rsa("small", 1024);
  json enc = rsa.Jwk();
  enc["use"] = "enc";
  enc["kid"] = "enc";
  json off_curve = ec.Jwk();
  off_curve["kid"] = "bad";
  off_curve["y"] = off_curve["x"];
  JwksCache cache;
  REQUIRE(cache.LoadJwks(JwksOf({rsa.Jwk(), ec.Jwk(), small.Jwk(), enc, off_curve,
                                 json{{"kty", "OKP"}, {"kid", "x"}}, json("junk")})).ok());
  CHECK(cache.size() == 2);
  CHECK(cache.Find("r", JwsAlgorithm::kRS256) != nullptr);
  CHECK(cache.Find("r", JwsAlgorithm::kPS256) != nullptr);
  CHECK(cache.Find("r", JwsAlgorithm::kES256) == nullptr);
  CHECK(cache.Find("e", JwsAlgorithm::kES256) != nullptr);
  CHECK(cache.Find("e", JwsAlgorithm::kES384) == nullptr);
  CHECK(cache.Find("small", JwsAlgorithm::kRS256) == nullptr);
  CHECK(cache.Find("bad", JwsAlgorithm::kES256) == nullptr);
  CHECK(cache.Find("", JwsAlgorithm::kRS256) == nullptr);  // two keys: kid required

  CHECK_FALSE(JwksCache().LoadJwks("not json").ok());
  CHECK_FALSE(JwksCache().LoadJwks(R"({"keys": {}})").ok());
  CHECK_FALSE(JwksCache().LoadJwks(R"({"keys": []})").ok());
}

TEST_CASE("an ECDSA signature of the wrong width is refused", "[identity]") {
  static const TestKey ec = TestKey::Ec("e", "P-256");
  JwksCache cache;
  REQUIRE(cache.LoadJwks(JwksOf({ec.Jwk()})).ok());
  const std::string token = ec.Mint("ES256", json{{"x", 1}});
  auto jws = SplitCompactJws(token);
  REQUIRE(jws.ok());
  auto key = cache.Find("e", JwsAlgorithm::kES256);
  REQUIRE(key != nullptr);
  CHECK(VerifyJwsSignature(JwsAlgorithm::kES256, key->pkey.get(), jws->signing_input, jws->signature));
  CHECK_FALSE(VerifyJwsSignature(JwsAlgorithm::kES256, key->pkey.get(), jws->signing_input,
                                 jws->signature.substr(1)));
  CHECK_FALSE(VerifyJwsSignature(JwsAlgorithm::kES256, key->pkey.get(), jws->signing_input,
                                 "\x30\x06\x02\x01\x01\x02\x01\x01"));  // DER is not JOSE
}

}  // namespace
}  // namespace pgward::identity
