// SCRAM-SHA-256 client (RFC 5802, RFC 7677) and Postgres md5 password hashing, over OpenSSL 3 EVP.
#include "common/crypto/scram_client.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/crypto/token_hash.h"

namespace pgward::crypto {
namespace {

// RFC 7677 section 4 asks for at least 4096, and Postgres defaults to 4096, but older servers and test
// setups may use fewer; any positive count up to kMaxScramIterations is accepted.
// Salt sizes Postgres uses are 16 bytes; anything in this range is plausible.
constexpr size_t kMaxSaltBytes = 1024;
constexpr size_t kDefaultNonceBytes = 18;  // same as libpq (SCRAM_RAW_NONCE_LEN)

// RFC 5802 section 5.1 "n": ',' and '=' in a saslname are written as "=2C" and "=3D".
std::string EscapeSaslName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '=') {
      out += "=3D";
    } else if (c == ',') {
      out += "=2C";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// RFC 5802 section 7: printable = %x21-2B / %x2D-7E (printable ASCII except ',').
bool IsPrintableNonce(std::string_view s) {
  for (char c : s) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return !s.empty();
}

std::string Pbkdf2HmacSha256(std::string_view password, std::string_view salt, int iterations) {
  std::string out(32, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        iterations, EVP_sha256(), static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    std::fputs("pgward: PBKDF2-HMAC-SHA-256 failed, aborting\n", stderr);
    std::abort();
  }
  return out;
}

std::string Xor(std::string_view a, std::string_view b) {
  std::string out(a.size(), '\0');
  for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<char>(a[i] ^ b[i]);
  return out;
}

// Debian's Abseil 20220623 is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0),
// which does not convert from std::string_view implicitly.
absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::vector<std::string_view> SplitOnComma(std::string_view s) {
  std::vector<std::string_view> parts;
  while (true) {
    size_t comma = s.find(',');
    parts.push_back(s.substr(0, comma));
    if (comma == std::string_view::npos) return parts;
    s.remove_prefix(comma + 1);
  }
}

void Cleanse(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
}

// A "e=" attribute (RFC 5802 section 7 server-error) becomes PermissionDenied with the server's value
// (a fixed token such as "invalid-proof", never secret).
absl::Status ServerError(std::string_view attr) {
  return absl::PermissionDeniedError(absl::StrCat("SCRAM server reported an error: ", AV(attr.substr(2))));
}

}  // namespace

ScramSha256Client::ScramSha256Client(std::string password, std::string username, std::string client_nonce)
    : password_(std::move(password)), username_(std::move(username)), client_nonce_(std::move(client_nonce)) {
  if (client_nonce_.empty()) client_nonce_ = Base64Encode(RandomBytes(kDefaultNonceBytes));
}

std::string ScramSha256Client::ClientFirstMessage() {
  client_first_bare_ = absl::StrCat("n=", EscapeSaslName(username_), ",r=", client_nonce_);
  // gs2-header "n,,": no channel binding, no authzid (RFC 5802 section 7).
  return absl::StrCat("n,,", client_first_bare_);
}

absl::Status ScramSha256Client::HandleServerFirst(std::string_view server_first) {
  server_first_ok_ = false;
  if (client_first_bare_.empty()) ClientFirstMessage();
  if (server_first.substr(0, 2) == "e=") return ServerError(server_first);
  if (server_first.substr(0, 2) == "m=") {
    // RFC 5802 section 5.1 "m": a mandatory extension we do not know means we must fail.
    return absl::UnimplementedError("SCRAM server-first demands an unsupported mandatory extension");
  }
  std::vector<std::string_view> attrs = SplitOnComma(server_first);
  // RFC 5802 section 7: server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
  // ["," extensions]; the order is fixed.
  if (attrs.size() < 3 || attrs[0].substr(0, 2) != "r=" || attrs[1].substr(0, 2) != "s=" ||
      attrs[2].substr(0, 2) != "i=") {
    return absl::InvalidArgumentError("SCRAM server-first message is malformed (expected r=,s=,i=)");
  }
  std::string_view nonce = attrs[0].substr(2);
  // The combined nonce must start with ours and add the server's part; otherwise it could be a replay
  // of another exchange.
  if (nonce.size() <= client_nonce_.size() || nonce.substr(0, client_nonce_.size()) != client_nonce_ ||
      !IsPrintableNonce(nonce)) {
    return absl::InvalidArgumentError("SCRAM server nonce does not extend the client nonce");
  }
  std::optional<std::string> salt = Base64Decode(attrs[1].substr(2));
  if (!salt || salt->empty() || salt->size() > kMaxSaltBytes) {
    return absl::InvalidArgumentError("SCRAM salt is not valid base64");
  }
  std::string_view iter_text = attrs[2].substr(2);
  int64_t iterations = 0;
  auto [end, ec] = std::from_chars(iter_text.data(), iter_text.data() + iter_text.size(), iterations);
  if (ec != std::errc() || end != iter_text.data() + iter_text.size() || iter_text.empty()) {
    return absl::InvalidArgumentError("SCRAM iteration count is not a number");
  }
  if (iterations < 1) {
    return absl::InvalidArgumentError(absl::StrCat("SCRAM iteration count ", iterations, " is out of range"));
  }
  if (iterations > kMaxScramIterations) {
    return absl::InvalidArgumentError(absl::StrCat("SCRAM iteration count ", iterations,
                                                   " is too high (pgward's limit is ", kMaxScramIterations, ")"));
  }

  // RFC 5802 section 3 key derivation; H = SHA-256, HMAC = HMAC-SHA-256 (RFC 7677).
  std::string client_final_without_proof = absl::StrCat("c=biws,r=", AV(nonce));  // biws = base64("n,,")
  std::string auth_message = absl::StrCat(client_first_bare_, ",", AV(server_first), ",", client_final_without_proof);
  std::string salted = Pbkdf2HmacSha256(password_, *salt, static_cast<int>(iterations));
  std::string client_key = HmacSha256(salted, "Client Key");
  std::string stored_key = Sha256(client_key);
  std::string client_signature = HmacSha256(stored_key, auth_message);
  std::string proof = Xor(client_key, client_signature);
  std::string server_key = HmacSha256(salted, "Server Key");
  expected_server_signature_ = HmacSha256(server_key, auth_message);
  client_final_ = absl::StrCat(client_final_without_proof, ",p=", Base64Encode(proof));
  for (std::string* s : {&salted, &client_key, &stored_key, &client_signature, &proof, &server_key}) Cleanse(*s);
  server_first_ok_ = true;
  return absl::OkStatus();
}

std::string ScramSha256Client::ClientFinalMessage() { return server_first_ok_ ? client_final_ : std::string(); }

absl::Status ScramSha256Client::VerifyServerFinal(std::string_view server_final) {
  if (!server_first_ok_) return absl::FailedPreconditionError("SCRAM server-final before a valid server-first");
  std::string_view first = server_final.substr(0, server_final.find(','));
  if (first.substr(0, 2) == "e=") return ServerError(first);
  if (first.substr(0, 2) != "v=") {
    return absl::InvalidArgumentError("SCRAM server-final message is malformed (expected v=)");
  }
  std::optional<std::string> signature = Base64Decode(first.substr(2));
  if (!signature) return absl::InvalidArgumentError("SCRAM server signature is not valid base64");
  if (!ConstantTimeEquals(*signature, expected_server_signature_)) {
    return absl::UnauthenticatedError("SCRAM server signature does not match: the server does not know the password");
  }
  return absl::OkStatus();
}

std::string PostgresMd5Password(std::string_view user, std::string_view password, std::string_view salt4) {
  auto md5_hex = [](std::string_view data) -> std::optional<std::string> {
    unsigned char digest[16];
    unsigned int len = 0;
    // Fails only when the loaded providers have no MD5 (FIPS configuration).
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16) {
      return std::nullopt;
    }
    return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), len));
  };
  std::optional<std::string> inner = md5_hex(absl::StrCat(AV(password), AV(user)));
  if (!inner) return "";
  std::optional<std::string> outer = md5_hex(absl::StrCat(*inner, AV(salt4)));
  if (!outer) return "";
  return absl::StrCat("md5", *outer);
}

}  // namespace pgward::crypto
