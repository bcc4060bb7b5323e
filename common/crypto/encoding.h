// Base64 (RFC 4648 sections 4 and 5) and hex encodings for protocol and storage use.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pgward::crypto {

// Standard alphabet, with '=' padding (as SCRAM requires, RFC 5802 section 7).
std::string Base64Encode(std::string_view data);
// URL-safe alphabet, no padding (as JWTs use, RFC 7515 section 2).
std::string Base64UrlEncode(std::string_view data);
// Strict: standard alphabet, padding required, no whitespace; nullopt on anything else,
// including non-zero padding bits.
std::optional<std::string> Base64Decode(std::string_view text);
// URL-safe alphabet; padding optional but must be correct if present.
std::optional<std::string> Base64UrlDecode(std::string_view text);
// Lowercase hex.
std::string HexEncode(std::string_view data);

}  // namespace pgward::crypto
