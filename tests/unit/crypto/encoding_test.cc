// Tests for base64, base64url and hex encodings (RFC 4648 test vectors and edge lengths).
#include "common/crypto/encoding.h"

#include <catch2/catch.hpp>

#include <string>

#include "common/crypto/random.h"

namespace pgward::crypto {
namespace {

TEST_CASE("Base64 encodes the RFC 4648 section 10 vectors", "[encoding]") {
  auto [plain, encoded] = GENERATE(table<std::string, std::string>({
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  }));
  CHECK(Base64Encode(plain) == encoded);
  CHECK(Base64Decode(encoded) == plain);
}

TEST_CASE("Base64url uses the URL alphabet without padding", "[encoding]") {
  std::string bytes("\xfb\xff\xbf", 3);
  CHECK(Base64Encode(bytes) == "+/+/");
  CHECK(Base64UrlEncode(bytes) == "-_-_");
  CHECK(Base64UrlEncode("f") == "Zg");
  CHECK(Base64UrlEncode("fo") == "Zm8");
  CHECK(Base64UrlDecode("-_-_") == bytes);
  CHECK(Base64UrlDecode("Zg") == std::string("f"));
  CHECK(Base64UrlDecode("Zg==") == std::string("f"));  // correct padding is tolerated
}

TEST_CASE("Base64 round-trips every length from 0 to 70 and every byte value", "[encoding]") {
  for (size_t len = 0; len <= 70; ++len) {
    std::string data = RandomBytes(len);
    INFO("length " << len);
    CHECK(Base64Decode(Base64Encode(data)) == data);
    CHECK(Base64UrlDecode(Base64UrlEncode(data)) == data);
    CHECK(Base64UrlEncode(data).find('=') == std::string::npos);
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  CHECK(Base64Decode(Base64Encode(all)) == all);
  CHECK(Base64UrlDecode(Base64UrlEncode(all)) == all);
}

TEST_CASE("Base64 decoding is strict", "[encoding]") {
  auto bad = GENERATE(as<std::string>{}, "Zg", "Zg=", "Z===", "Zm9v\n", " Zm9v", "Zm9v=", "Zm-v", "Zh==",
                      "Zm9=", "====", "Z", "Zm9vY", "Zg==Zg==");
  INFO("input '" << bad << "'");
  CHECK_FALSE(Base64Decode(bad).has_value());
}

TEST_CASE("Base64url decoding is strict", "[encoding]") {
  auto bad = GENERATE(as<std::string>{}, "Zg=", "Zm+v", "Zm/v", "Z", "Zh", "Zm9vY", "Zm 9v", "Zg===");
  INFO("input '" << bad << "'");
  CHECK_FALSE(Base64UrlDecode(bad).has_value());
}

TEST_CASE("Hex encodes lowercase, two digits per byte", "[encoding]") {
  CHECK(HexEncode("") == "");
  CHECK(HexEncode(std::string("\x00\x0f\xa0\xff", 4)) == "000fa0ff");
}

TEST_CASE("Random helpers produce the documented shapes", "[random]") {
  CHECK(RandomBytes(0).empty());
  CHECK(RandomBytes(33).size() == 33);
  std::string id = NewSessionId();
  CHECK(id.size() == 32);
  CHECK(id.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(id != NewSessionId());
  std::string token = RandomToken();
  CHECK(token.size() == 43);  // 32 bytes, base64url, no padding
  CHECK(Base64UrlDecode(token).value().size() == 32);
  CHECK(RandomToken(3).size() == 4);
  // Two independent 32-bit draws colliding 8 times in a row would mean a broken generator.
  bool differs = false;
  for (int i = 0; i < 8 && !differs; ++i) differs = RandomUint32() != RandomUint32();
  CHECK(differs);
}

}  // namespace
}  // namespace pgward::crypto
