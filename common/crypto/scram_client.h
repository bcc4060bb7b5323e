// SCRAM-SHA-256 client (RFC 5802, RFC 7677) as PostgreSQL speaks it, plus the legacy md5 password hash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace pgward::crypto {

// Highest PBKDF2 iteration count a server may ask for. Postgres uses 4096 by default
// (scram_iterations); 100,000 rounds cost about 50 ms of one core here, 10 million cost
// seconds, which a hostile or misconfigured server could use to stall the agent.
inline constexpr int64_t kMaxScramIterations = 100'000;

// One SCRAM exchange. Use once, in order: ClientFirstMessage, HandleServerFirst, ClientFinalMessage,
// VerifyServerFinal. Channel binding is not offered ("n,,", RFC 5802 section 7): the caller's TLS to
// Postgres is verified separately, and Postgres accepts SCRAM-SHA-256 without -PLUS.
class ScramSha256Client {
 public:
  // Postgres sends an empty user name in client-first ("n,,n=,r=...") because the role comes from the
  // startup message; tests pass "user" for RFC 7677's vector. An empty client_nonce means 18 random
  // bytes, base64 (same as libpq).
  //
  // The password is used as raw UTF-8. That equals SASLprep(password) for ASCII passwords and for
  // already-NFKC-normalised ones, which is what Postgres does too (it falls back to raw bytes when
  // SASLprep fails); exotic Unicode passwords that SASLprep would change are not supported.
  ScramSha256Client(std::string password, std::string username = "", std::string client_nonce = "");

  // "n,,n=<user>,r=<nonce>" (RFC 5802 section 5.1; '=' and ',' in the user name are escaped).
  std::string ClientFirstMessage();

  // Parses "r=<nonce>,s=<salt>,i=<iterations>[,ext...]". Refuses a nonce that does not extend ours
  // (RFC 5802 section 5.1 "r"), a salt that is not base64, an iteration count below 1 or above
  // kMaxScramIterations, a mandatory extension ("m="), and a server error ("e="). On success derives
  // the proof: PBKDF2 with the server's count, so callers on an event loop run this off it.
  absl::Status HandleServerFirst(std::string_view server_first);

  // "c=biws,r=<combined nonce>,p=<proof>". Empty if HandleServerFirst has not succeeded.
  std::string ClientFinalMessage();

  // Checks "v=<server signature>" in constant time (RFC 5802 section 9: this is what proves the
  // server knew the verifier). "e=<error>" becomes PermissionDenied.
  absl::Status VerifyServerFinal(std::string_view server_final);

 private:
  std::string password_;
  std::string username_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string client_final_;
  std::string expected_server_signature_;  // raw 32 bytes
  bool server_first_ok_ = false;
};

// Postgres md5 authentication (protocol section 55.2 "AuthenticationMD5Password"):
// "md5" + md5hex(md5hex(password + user) + salt). `salt4` is the 4 raw bytes from the server.
// Returns "" if MD5 is unavailable (an OpenSSL FIPS-only configuration); the login then fails upstream.
std::string PostgresMd5Password(std::string_view user, std::string_view password, std::string_view salt4);

}  // namespace pgward::crypto
