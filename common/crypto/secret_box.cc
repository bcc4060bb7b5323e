// AES-256-GCM sealing (NIST SP 800-38D) over OpenSSL 3 EVP for secrets kept in the gateway's store.
#include "common/crypto/secret_box.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto/encoding.h"
#include "common/crypto/private_file.h"
#include "common/crypto/random.h"
#include "common/crypto/tls_material.h"

namespace pgward::crypto {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr std::string_view kPrefix = "v1:";
// Bound into every seal as additional authenticated data, so a value sealed by some other AES-GCM user
// of the same key (there is none today) or a future format version cannot be opened as a v1 secret.
constexpr std::string_view kAad = "pgward secret box v1";

struct CtxFree { void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); } };

unsigned char* U(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }
const unsigned char* U(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

absl::StatusOr<SecretBox> SecretBox::FromKey(std::string key) {
  if (key.size() != kKeyBytes) return absl::InvalidArgumentError("secret box key must be 32 bytes");
  return SecretBox(std::move(key));
}

absl::StatusOr<SecretBox> SecretBox::LoadOrCreate(const std::string& key_path) {
  absl::StatusOr<std::string> key = ReadFileToString(key_path, 4096);
  if (absl::IsNotFound(key.status())) {
    if (absl::Status s = CreatePrivateDirectories(std::filesystem::path(key_path).parent_path().string()); !s.ok()) {
      return s;
    }
    std::string fresh = RandomBytes(kKeyBytes);
    absl::Status s = WriteFileAtomically(key_path, fresh, 0600, /*overwrite=*/false);
    OPENSSL_cleanse(fresh.data(), fresh.size());
    // AlreadyExists: another process created it first; use theirs.
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
    key = ReadFileToString(key_path, 4096);
  }
  if (!key.ok()) return key.status();
  if (key->size() != kKeyBytes) {
    // Never regenerate here: that would silently make every stored secret unreadable.
    return absl::FailedPreconditionError(
        absl::StrCat(key_path, " is not a 32-byte key (", key->size(), " bytes); restore it from backup"));
  }
  return SecretBox(*std::move(key));
}

std::string SecretBox::Seal(std::string_view plaintext) const {
  std::string nonce = RandomBytes(kNonceBytes);
  std::string body(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  std::copy(nonce.begin(), nonce.end(), body.begin());
  std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  bool ok = ctx && EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), U(key_), U(nonce), nullptr) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(kAad), static_cast<int>(kAad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), U(body) + kNonceBytes, &len, U(plaintext),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), U(body) + kNonceBytes + len, &final_len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes,
                                U(body) + kNonceBytes + plaintext.size()) == 1;
  if (!ok) {
    // AES-GCM with a valid key cannot fail short of memory exhaustion; never return plaintext.
    std::fputs("pgward: AES-256-GCM seal failed, aborting\n", stderr);
    std::abort();
  }
  return std::string(kPrefix) + Base64Encode(body);
}

absl::StatusOr<std::string> SecretBox::Open(std::string_view sealed) const {
  if (sealed.substr(0, kPrefix.size()) != kPrefix) {
    return absl::InvalidArgumentError("sealed secret has an unknown format (expected v1:)");
  }
  std::optional<std::string> body = Base64Decode(sealed.substr(kPrefix.size()));
  if (!body) return absl::InvalidArgumentError("sealed secret is not valid base64");
  if (body->size() < kNonceBytes + kTagBytes) return absl::InvalidArgumentError("sealed secret is too short");
  size_t ct_len = body->size() - kNonceBytes - kTagBytes;
  std::string plaintext(ct_len, '\0');
  std::string tag = body->substr(kNonceBytes + ct_len);
  std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return absl::ResourceExhaustedError("EVP_CIPHER_CTX_new");
  int len = 0;
  int final_len = 0;
  bool ok = EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(), U(key_), U(*body), nullptr) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(kAad), static_cast<int>(kAad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), U(plaintext), &len, U(*body) + kNonceBytes, static_cast<int>(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, U(tag)) == 1 &&
            // The tag is checked here; no plaintext is released unless it matches.
            EVP_DecryptFinal_ex(ctx.get(), U(plaintext) + len, &final_len) == 1;
  if (!ok) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return absl::DataLossError("sealed secret failed authentication (tampered, or sealed with another key)");
  }
  return plaintext;
}

}  // namespace pgward::crypto
