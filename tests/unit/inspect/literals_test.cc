// Tests for Literals: error-message redaction, the scan-result decoder and the literal replacer.
#include "agent/inspect/literals.h"

#include <string>

#include <catch2/catch.hpp>

namespace pgward::inspect {
namespace {

TEST_CASE("values in server error messages are redacted, names the statement holds are kept", "[literals]") {
  auto [message, sqlstate, known, redacted] = GENERATE(table<std::string, std::string, std::string, std::string>({
      {"invalid input syntax for type integer: \"ssn-123-45-6789\"", "22P02", "SELECT $1::int",
       "invalid input syntax for type integer: \"…\""},
      {"value \"99999999999\" is out of range for type integer", "22003", "SELECT $1::int",
       "value \"…\" is out of range for type integer"},
      {"relation \"orders_x\" does not exist", "42P01", "SELECT * FROM orders_x", "relation \"orders_x\" does not exist"},
      {"column \"nme\" does not exist", "42703", "SELECT nme FROM t", "column \"nme\" does not exist"},
      {"relation \"public.orderz\" does not exist", "42P01", "SELECT * FROM public.orderz",
       "relation \"public.orderz\" does not exist"},
      // a name only as part of a longer word in the statement does not count
      {"invalid input value for enum mood: \"ha\"", "22P02", "SELECT $1::mood WHERE happy", "invalid input value for enum mood: \"…\""},
      {"duplicate key value violates unique constraint \"customers_pkey\"", "23505", "INSERT INTO customers VALUES ($1)",
       "duplicate key value violates unique constraint \"…\""},
      {"syntax error at or near \"'ssn-555'\"", "42601", "", "syntax error at or near \"…\""},
      {"invalid byte sequence for encoding \"UTF8\": 0xe2 0x28 0xa1", "22021", "SELECT $1",
       "invalid byte sequence for encoding \"…\": 0x… 0x… 0x…"},
      {"unterminated \"quote", "42601", "", "unterminated \"…"},
      {"ungültige Eingabesyntax für Typ integer: „ssn-1“", "22P02", "SELECT $1::int",
       "ungültige Eingabesyntax für Typ integer: „…“"},
      {"syntaxe en entrée invalide pour le type integer : « ssn-2 »", "22P02", "SELECT $1::int",
       "syntaxe en entrée invalide pour le type integer : «…»"},
      {"customer ssn-999 is blocked", "P0001", "SELECT f()", "(message raised by database code; not captured)"},
      {"division by zero", "22012", "SELECT 1/0", "division by zero"},
      {"", "", "", ""},
  }));
  CAPTURE(message);
  CHECK(RedactErrorMessage(message, sqlstate, known) == redacted);
}

TEST_CASE("scan results decode, and malformed ones are refused", "[literals]") {
  auto tokens = ScanSql("select 'a', $1");
  REQUIRE(tokens.has_value());
  REQUIRE(tokens->size() == 4);
  CHECK((*tokens)[1].start == 7);
  CHECK((*tokens)[1].end == 10);
  CHECK((*tokens)[1].kind == 261);  // SCONST
  CHECK((*tokens)[3].kind == 267);  // PARAM
  CHECK_FALSE(ScanSql("select 'unterminated").has_value());
  // field 2 (tokens), length 3, but only 2 bytes follow
  CHECK_FALSE(DecodeScanResult(std::string("\x12\x03\x08\x01", 4)).has_value());
  // an unterminated varint
  CHECK_FALSE(DecodeScanResult(std::string("\x08\xff", 2)).has_value());
  // wire type 3 (groups) is not used by pg_query
  CHECK_FALSE(DecodeScanResult(std::string("\x0b", 1)).has_value());
  CHECK(DecodeScanResult("")->empty());
}

TEST_CASE("remaining literals are replaced with the next free parameter numbers", "[literals]") {
  CHECK(ReplaceRemainingLiterals("notify c, 'x'") == "notify c, $1");
  CHECK(ReplaceRemainingLiterals("select $3 where a = 'x' and b = U&'d\\0061t'") ==
        "select $3 where a = $4 and b = $5");
  CHECK(ReplaceRemainingLiterals("select u&'it''s'\n'ssn' , 1") == "select $1 , 1");
  CHECK(ReplaceRemainingLiterals("select $1, $2") == "select $1, $2");  // nothing to scan
  CHECK_FALSE(ReplaceRemainingLiterals("select 'unterminated").has_value());
}

}  // namespace
}  // namespace pgward::inspect
