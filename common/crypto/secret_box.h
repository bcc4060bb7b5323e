// AES-256-GCM sealing for secrets stored in the gateway's SQLite store.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace pgward::crypto {

class SecretBox {
 public:
  // Reads a 32-byte key from key_path, or creates it (32 random bytes, mode 0600, parent directories
  // 0700) if it does not exist. A file of any other size is refused (FailedPrecondition).
  static absl::StatusOr<SecretBox> LoadOrCreate(const std::string& key_path);
  // For tests and callers that hold the key elsewhere; key must be 32 bytes.
  static absl::StatusOr<SecretBox> FromKey(std::string key);

  // "v1:" + base64(nonce12 | ciphertext | tag16). A fresh random nonce per call; with 96-bit random
  // nonces a key is good for far more seals than a gateway store will ever hold (NIST SP 800-38D 8.3).
  std::string Seal(std::string_view plaintext) const;
  // InvalidArgument for a malformed envelope, DataLoss if authentication fails (tampered or wrong key).
  absl::StatusOr<std::string> Open(std::string_view sealed) const;

 private:
  explicit SecretBox(std::string key) : key_(std::move(key)) {}
  std::string key_;  // 32 bytes
};

}  // namespace pgward::crypto
