// Base64 (RFC 4648 sections 4 and 5) and hex encodings. Hand-written rather than EVP_EncodeBlock because
// OpenSSL's decoder tolerates whitespace and does not report the decoded length without padding games;
// protocol input (SCRAM salts, JWT segments) must be decoded strictly.
#include "common/crypto/encoding.h"

#include <array>
#include <cstdint>

namespace pgward::crypto {
namespace {

constexpr char kStdAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Encode(std::string_view data, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint32_t{static_cast<uint8_t>(data[i])} << 16) |
                 (uint32_t{static_cast<uint8_t>(data[i + 1])} << 8) | static_cast<uint8_t>(data[i + 2]);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{static_cast<uint8_t>(data[i])} << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    if (pad) out.append("==");
  } else if (rest == 2) {
    uint32_t v = (uint32_t{static_cast<uint8_t>(data[i])} << 16) |
                 (uint32_t{static_cast<uint8_t>(data[i + 1])} << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    if (pad) out.push_back('=');
  }
  return out;
}

// Maps a character to its 6-bit value, or -1.
int Value(char c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

// Decodes unpadded base64 text (length mod 4 != 1). Non-zero trailing bits are refused so that each
// byte string has exactly one encoding (RFC 4648 section 3.5).
std::optional<std::string> DecodeUnpadded(std::string_view text, bool url) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = Value(c, url);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

// Strips correct '=' padding; nullopt if padding is present but wrong (or required and missing).
std::optional<std::string_view> StripPadding(std::string_view text, bool padding_required) {
  size_t pads = 0;
  while (pads < text.size() && pads < 2 && text[text.size() - 1 - pads] == '=') ++pads;
  if (pads == 0) {
    if (padding_required && text.size() % 4 != 0) return std::nullopt;
    return text;
  }
  if (text.size() % 4 != 0) return std::nullopt;
  return text.substr(0, text.size() - pads);
}

}  // namespace

std::string Base64Encode(std::string_view data) { return Encode(data, kStdAlphabet, /*pad=*/true); }

std::string Base64UrlEncode(std::string_view data) { return Encode(data, kUrlAlphabet, /*pad=*/false); }

std::optional<std::string> Base64Decode(std::string_view text) {
  auto body = StripPadding(text, /*padding_required=*/true);
  if (!body) return std::nullopt;
  return DecodeUnpadded(*body, /*url=*/false);
}

std::optional<std::string> Base64UrlDecode(std::string_view text) {
  auto body = StripPadding(text, /*padding_required=*/false);
  if (!body) return std::nullopt;
  return DecodeUnpadded(*body, /*url=*/true);
}

std::string HexEncode(std::string_view data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (char c : data) {
    auto b = static_cast<uint8_t>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

}  // namespace pgward::crypto
