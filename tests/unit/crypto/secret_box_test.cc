// Tests for SecretBox: key file creation and reuse, seal/open round trips, tampering and wrong keys.
#include "common/crypto/secret_box.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <string>

#include "common/crypto/encoding.h"
#include "common/crypto/private_file.h"
#include "common/crypto/tls_material.h"
#include "tests/unit/crypto/temp_dir.h"

namespace pgward::crypto {
namespace {

using testing::TempDir;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

TEST_CASE("SecretBox creates a 32-byte 0600 key in a 0700 directory and reuses it", "[secret_box]") {
  TempDir dir;
  REQUIRE_FALSE(dir.path().empty());
  std::string key_path = dir.File("state/keys/secret.key");
  absl::StatusOr<SecretBox> first = SecretBox::LoadOrCreate(key_path);
  REQUIRE(first.ok());
  CHECK(ReadFileToString(key_path).value().size() == 32);
  CHECK(ModeOf(key_path) == 0600);
  CHECK(ModeOf(dir.File("state")) == 0700);
  CHECK(ModeOf(dir.File("state/keys")) == 0700);

  std::string sealed = first->Seal("db-password");
  absl::StatusOr<SecretBox> second = SecretBox::LoadOrCreate(key_path);
  REQUIRE(second.ok());
  CHECK(second->Open(sealed).value() == "db-password");
}

TEST_CASE("SecretBox round-trips empty, binary and large plaintexts", "[secret_box]") {
  SecretBox box = SecretBox::FromKey(std::string(32, 'k')).value();
  std::string binary("\x00\x01\xff\n,=", 6);
  std::string large(100000, 'x');
  for (const std::string& plaintext : {std::string(), binary, large}) {
    std::string sealed = box.Seal(plaintext);
    CHECK(sealed.rfind("v1:", 0) == 0);
    CHECK(box.Open(sealed).value() == plaintext);
  }
}

TEST_CASE("SecretBox uses a fresh nonce for every seal", "[secret_box]") {
  SecretBox box = SecretBox::FromKey(std::string(32, 'k')).value();
  CHECK(box.Seal("same") != box.Seal("same"));
}

TEST_CASE("SecretBox refuses any tampered byte", "[secret_box]") {
  SecretBox box = SecretBox::FromKey(std::string(32, 'k')).value();
  std::string sealed = box.Seal("the secret");
  std::string body = Base64Decode(sealed.substr(3)).value();
  // nonce (first 12), ciphertext (middle), tag (last 16): flipping a bit anywhere must fail.
  for (size_t i = 0; i < body.size(); ++i) {
    std::string tampered = body;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    absl::StatusOr<std::string> opened = box.Open("v1:" + Base64Encode(tampered));
    INFO("byte " << i);
    CHECK(absl::IsDataLoss(opened.status()));
  }
  // Truncated (tag cut off) and extended ciphertexts too.
  CHECK_FALSE(box.Open("v1:" + Base64Encode(body.substr(0, body.size() - 1))).ok());
  CHECK_FALSE(box.Open("v1:" + Base64Encode(body + "x")).ok());
}

TEST_CASE("SecretBox refuses malformed envelopes as invalid arguments", "[secret_box]") {
  SecretBox box = SecretBox::FromKey(std::string(32, 'k')).value();
  std::string sealed = box.Seal("x");
  CHECK(absl::IsInvalidArgument(box.Open("").status()));
  CHECK(absl::IsInvalidArgument(box.Open("v2:" + sealed.substr(3)).status()));
  CHECK(absl::IsInvalidArgument(box.Open("v1:not base64!").status()));
  CHECK(absl::IsInvalidArgument(box.Open("v1:" + Base64Encode("short")).status()));
}

TEST_CASE("SecretBox cannot open a value sealed under another key", "[secret_box]") {
  TempDir dir;
  SecretBox a = SecretBox::LoadOrCreate(dir.File("a.key")).value();
  SecretBox b = SecretBox::LoadOrCreate(dir.File("b.key")).value();
  CHECK(absl::IsDataLoss(b.Open(a.Seal("secret")).status()));
}

TEST_CASE("SecretBox refuses a key file of the wrong size instead of replacing it", "[secret_box]") {
  TempDir dir;
  std::string key_path = dir.File("bad.key");
  REQUIRE(WriteFileAtomically(key_path, "too short", 0600, false).ok());
  CHECK(absl::IsFailedPrecondition(SecretBox::LoadOrCreate(key_path).status()));
  CHECK(ReadFileToString(key_path).value() == "too short");
  CHECK(absl::IsInvalidArgument(SecretBox::FromKey("short").status()));
}

}  // namespace
}  // namespace pgward::crypto
