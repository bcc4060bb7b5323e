// Principal and group names from tokens: printable UTF-8 only, bounded; issuer-scoped names.
#include <catch2/catch.hpp>

#include <string>

#include "gateway/identity/identity_name.h"
#include "gateway/identity/issuer_scoped_name.h"

namespace pgward::identity {
namespace {

TEST_CASE("plain names in any script are accepted", "[identity][names]") {
  const std::string name = GENERATE(std::string("alice-bot"), std::string("svc:reports@example.com"),
                                    std::string("Domain Users"), std::string("caf\xc3\xa9-bot"),
                                    std::string("\xe6\x95\xb0\xe6\x8d\xae"), std::string("\xf0\x9f\xa4\x96"),
                                    std::string(1024, 'x'));
  CHECK(CheckIdentityName(name).ok());
}

TEST_CASE("control, separator, bidi and malformed names are refused", "[identity][names]") {
  struct Case {
    std::string name;
    std::string why;
  };
  const Case c = GENERATE(
      Case{"", "is empty"}, Case{std::string(1025, 'x'), "longer"},
      Case{"bot\nFAKE LOG LINE", "control"}, Case{"bot\r", "control"}, Case{std::string("bot\0x", 5), "control"},
      Case{"bot\t", "control"}, Case{"bot\x1b[31m", "control"}, Case{"bot\x7f", "control"},
      Case{"bot\xc2\x85", "control"},                       // U+0085 NEL (C1)
      Case{"bot\xc2\x9b", "control"},                       // U+009B CSI (C1)
      Case{"bot\xe2\x80\xa8", "control"},                   // U+2028 line separator
      Case{"bot\xe2\x80\xae" "gnp.exe", "control"},         // U+202E right-to-left override
      Case{"bot\xe2\x81\xa6", "control"},                   // U+2066 left-to-right isolate
      Case{"bot\xe2\x80\x8f", "control"},                   // U+200F right-to-left mark
      Case{"bot\xd8\x9c", "control"},                       // U+061C arabic letter mark
      Case{"bot\xff", "UTF-8"}, Case{"bot\xc3", "UTF-8"},   // invalid byte, truncated sequence
      Case{"bot\xc0\xaf", "UTF-8"},                         // overlong "/"
      Case{"bot\xe0\x80\x8a", "UTF-8"},                     // overlong newline
      Case{"bot\xed\xa0\x80", "UTF-8"},                     // a UTF-16 surrogate
      Case{"bot\xf4\x90\x80\x80", "UTF-8"},                 // above U+10FFFF
      Case{"bot\x80", "UTF-8"});                            // a stray continuation byte
  const absl::Status status = CheckIdentityName(c.name);
  INFO(c.why);
  REQUIRE(absl::IsInvalidArgument(status));
  CHECK(std::string(status.message()).find(c.why) != std::string::npos);
  // The message never repeats the name.
  if (c.name.size() > 3) CHECK(std::string(status.message()).find(c.name) == std::string::npos);
}

const std::vector<std::string> kOne = {"https://idp.example/realms/a"};
const std::vector<std::string> kTwo = {"https://idp.example/realms/a", "https://other.example"};

TEST_CASE("a bare name belongs to the only trusted issuer", "[identity][names]") {
  auto parsed = ParseIssuerScopedName("--admin-principal", "ops-admin", kOne);
  REQUIRE(parsed.ok());
  CHECK(parsed->issuer == kOne[0]);
  CHECK(parsed->name == "ops-admin");
  CHECK(FormatIssuerScopedName(kOne[0], "ops-admin", kOne) == "ops-admin");
}

TEST_CASE("ISSUER#NAME names a trusted issuer's principal; the first # ends the issuer", "[identity][names]") {
  struct Case {
    std::string text, issuer, name;
  };
  const Case c = GENERATE(Case{"https://idp.example/realms/a#ops-admin", "https://idp.example/realms/a", "ops-admin"},
                          Case{"https://other.example#ops-admin", "https://other.example", "ops-admin"},
                          Case{"https://other.example#team#1", "https://other.example", "team#1"});
  for (const auto* trusted : {&kOne, &kTwo}) {
    auto parsed = ParseIssuerScopedName("--admin-principal", c.text, *trusted);
    if (std::find(trusted->begin(), trusted->end(), c.issuer) == trusted->end()) {
      CHECK(absl::IsInvalidArgument(parsed.status()));
      continue;
    }
    REQUIRE(parsed.ok());
    CHECK(parsed->issuer == c.issuer);
    CHECK(parsed->name == c.name);
  }
  CHECK(FormatIssuerScopedName(kTwo[1], "ops-admin", kTwo) == "https://other.example#ops-admin");
}

TEST_CASE("with several issuers a bare name is refused with an example", "[identity][names]") {
  auto parsed = ParseIssuerScopedName("--admin-group", "operators", kTwo);
  REQUIRE(absl::IsInvalidArgument(parsed.status()));
  const std::string message(parsed.status().message());
  CHECK(message.find("--admin-group \"operators\"") == 0);
  CHECK(message.find("ISSUER#NAME") != std::string::npos);
  CHECK(message.find("https://idp.example/realms/a#operators") != std::string::npos);
}

TEST_CASE("untrusted issuers and bad names are refused", "[identity][names]") {
  const std::string text = GENERATE(std::string("https://evil.example#ops-admin"),
                                    std::string("https://idp.example/realms/a#"),
                                    std::string("https://idp.example/realms/a#bad\nname"));
  CHECK(absl::IsInvalidArgument(ParseIssuerScopedName("--admin-principal", text, kTwo).status()));
}

TEST_CASE("a name set matches (issuer, name) pairs only", "[identity][names]") {
  auto set = IssuerScopedNameSet::Parse("--admin-principal", {"https://other.example#ops-admin",
                                                             "https://idp.example/realms/a#dave"}, kTwo);
  REQUIRE(set.ok());
  CHECK(set->Contains("https://other.example", "ops-admin"));
  CHECK_FALSE(set->Contains("https://idp.example/realms/a", "ops-admin"));
  CHECK(set->Contains("https://idp.example/realms/a", "dave"));
  CHECK_FALSE(set->Contains("https://other.example", "dave"));
  CHECK(absl::IsInvalidArgument(IssuerScopedNameSet::Parse("--admin-principal", {"dave"}, kTwo).status()));
}

}  // namespace
}  // namespace pgward::identity
