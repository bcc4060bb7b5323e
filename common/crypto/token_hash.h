// Hashing of bearer tokens and secrets, and constant-time comparison.
#pragma once

#include <string>
#include <string_view>

namespace pgward::crypto {

// "sha256:" + lowercase hex of SHA-256(token). Used to store and look up tokens without keeping them.
std::string HashToken(std::string_view token);
// Compares without an early exit so timing does not reveal the matching prefix. Lengths are not secret.
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// Raw 32-byte SHA-256 digest.
std::string Sha256(std::string_view data);
// Raw 32-byte HMAC-SHA-256 (RFC 2104).
std::string HmacSha256(std::string_view key, std::string_view data);

}  // namespace pgward::crypto
