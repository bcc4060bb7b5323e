// Tests for the SCRAM-SHA-256 client (RFC 7677 vector and refusals) and Postgres md5 hashing.
#include "common/crypto/scram_client.h"

#include <catch2/catch.hpp>

#include <string>

#include "absl/strings/str_cat.h"

namespace pgward::crypto {
namespace {

// RFC 7677 section 3.
constexpr char kRfcNonce[] = "rOprNGfwEbeRWgbNEkqO";
constexpr char kRfcServerFirst[] =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr char kRfcClientFinal[] =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
// As printed in RFC 7677 section 3; recomputed independently with Python's hashlib
// (pbkdf2_hmac + hmac over the AuthMessage) to the same value.
constexpr char kRfcServerFinal[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

TEST_CASE("SCRAM client reproduces the RFC 7677 exchange exactly", "[scram]") {
  ScramSha256Client client("pencil", "user", kRfcNonce);
  CHECK(client.ClientFirstMessage() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  REQUIRE(client.HandleServerFirst(kRfcServerFirst).ok());
  CHECK(client.ClientFinalMessage() == kRfcClientFinal);
  CHECK(client.VerifyServerFinal(kRfcServerFinal).ok());
}

TEST_CASE("SCRAM client sends an empty user name and a random nonce as Postgres expects", "[scram]") {
  ScramSha256Client a("pw");
  ScramSha256Client b("pw");
  std::string first = a.ClientFirstMessage();
  REQUIRE(first.rfind("n,,n=,r=", 0) == 0);
  // 18 random bytes in base64 are 24 characters.
  CHECK(first.size() == std::string("n,,n=,r=").size() + 24);
  CHECK(first != b.ClientFirstMessage());
}

TEST_CASE("SCRAM client escapes '=' and ',' in the user name", "[scram]") {
  ScramSha256Client client("pw", "a=b,c", "nonce");
  CHECK(client.ClientFirstMessage() == "n,,n=a=3Db=2Cc,r=nonce");
}

TEST_CASE("SCRAM client accepts server-final extensions after v=", "[scram]") {
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  REQUIRE(client.HandleServerFirst(kRfcServerFirst).ok());
  CHECK(client.VerifyServerFinal(std::string(kRfcServerFinal) + ",x=ext").ok());
}

TEST_CASE("SCRAM client refuses malformed or hostile server-first messages", "[scram]") {
  auto [server_first, why] = GENERATE(table<std::string, std::string>({
      {"r=someoneElsesNonce123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce not extending ours"},
      {"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce without a server part"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=not*base64!,i=4096", "bad salt base64"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096", "salt missing padding"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=,i=4096", "empty salt"},
      {"r=rOprNGfwEbeRWgbNEkqOX,i=4096", "missing salt"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==", "missing iteration count"},
      {"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOX,i=4096", "attributes out of order"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", "iteration count 0"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1", "negative iteration count"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x", "iteration count with garbage"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=", "empty iteration count"},
      {"r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999999", "absurd iteration count"},
      {"m=mandatory,r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "mandatory extension"},
      {"e=other-error", "server error"},
      {"", "empty message"},
  }));
  INFO(why);
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  CHECK_FALSE(client.HandleServerFirst(server_first).ok());
  CHECK(client.ClientFinalMessage().empty());
}

TEST_CASE("SCRAM client accepts a low but positive iteration count", "[scram]") {
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  CHECK(client.HandleServerFirst("r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1").ok());
  CHECK_FALSE(client.ClientFinalMessage().empty());
}

TEST_CASE("SCRAM client accepts an iteration count up to pgward's cap and refuses one above", "[scram]") {
  // A hostile server could ask for millions of PBKDF2 rounds to stall the agent (finding 15).
  ScramSha256Client at_cap("pencil", "user", kRfcNonce);
  at_cap.ClientFirstMessage();
  CHECK(at_cap.HandleServerFirst(absl::StrCat("r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
                                              kMaxScramIterations))
            .ok());
  auto above = GENERATE(kMaxScramIterations + 1, int64_t{10'000'000});
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  absl::Status status =
      client.HandleServerFirst(absl::StrCat("r=rOprNGfwEbeRWgbNEkqOX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=", above));
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Catch::Contains(absl::StrCat("iteration count ", above, " is too high")));
  CHECK(client.ClientFinalMessage().empty());
}

TEST_CASE("SCRAM client refuses a wrong server signature", "[scram]") {
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  REQUIRE(client.HandleServerFirst(kRfcServerFirst).ok());
  // Same length, one byte different (the first character changes the first 6 bits).
  absl::Status status = client.VerifyServerFinal("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjRW4Q4=");
  CHECK(absl::IsUnauthenticated(status));
  // Differs from the RFC value only in the last 6 bytes.
  CHECK(absl::IsUnauthenticated(client.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjRW4Q4=")));
  CHECK_FALSE(client.VerifyServerFinal("v=").ok());
  CHECK_FALSE(client.VerifyServerFinal("v=***").ok());
  CHECK_FALSE(client.VerifyServerFinal("x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjRW4Q4=").ok());
}

TEST_CASE("SCRAM client with the wrong password does not accept the real server's signature", "[scram]") {
  ScramSha256Client client("pencil2", "user", kRfcNonce);
  client.ClientFirstMessage();
  REQUIRE(client.HandleServerFirst(kRfcServerFirst).ok());
  CHECK(client.ClientFinalMessage() != kRfcClientFinal);
  CHECK_FALSE(client.VerifyServerFinal(kRfcServerFinal).ok());
}

TEST_CASE("SCRAM client reports a server-final error", "[scram]") {
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  REQUIRE(client.HandleServerFirst(kRfcServerFirst).ok());
  absl::Status status = client.VerifyServerFinal("e=invalid-proof");
  CHECK(absl::IsPermissionDenied(status));
  CHECK(std::string(status.message()).find("invalid-proof") != std::string::npos);
}

TEST_CASE("SCRAM client refuses server-final before server-first", "[scram]") {
  ScramSha256Client client("pencil", "user", kRfcNonce);
  client.ClientFirstMessage();
  CHECK(absl::IsFailedPrecondition(client.VerifyServerFinal(kRfcServerFinal)));
}

TEST_CASE("Postgres md5 password matches an independently computed value", "[md5]") {
  // Computed in a shell, independently of this code:
  //   inner=$(printf '%s' 'secretpostgres' | md5sum | cut -d' ' -f1)      # 53f48b7c4b76a86ce72276c5755f217d
  //   { printf '%s' "$inner"; printf '\x01\x02\x03\x04'; } | md5sum
  CHECK(PostgresMd5Password("postgres", "secret", std::string("\x01\x02\x03\x04", 4)) ==
        "md5bb41a296aab6baccb36ff243a562abff");
  // inner=$(printf '%s' 'pencilu,s=r' | md5sum | cut -d' ' -f1); { printf '%s' "$inner"; printf 'abcd'; } | md5sum
  CHECK(PostgresMd5Password("u,s=r", "pencil", "abcd") == "md58c8020b5007d30d6f0b98e293d279037");
}

}  // namespace
}  // namespace pgward::crypto
