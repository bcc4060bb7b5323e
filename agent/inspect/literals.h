// Literals: keeps caller data out of audit rows. Finds the string constants libpg_query's
// normalizer leaves in utility statements (NOTIFY payloads, PREPARE bodies, DDL defaults) and the
// values Postgres echoes in error messages.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgward::inspect {

// One lexical token of SQL, as the Postgres scanner (pg_query_scan) reports it.
struct SqlToken {
  int start = 0;   // byte offsets into the text
  int end = 0;
  int kind = 0;    // the scanner's token number (pg_query.proto enum Token)
};

// The token kinds inspect code looks at (pg_query.proto enum Token).
inline constexpr int kTokenMinus = 45;  // ASCII_45
inline constexpr int kTokenUident = 259;
inline constexpr int kTokenFconst = 260;
inline constexpr int kTokenSconst = 261;
inline constexpr int kTokenUsconst = 262;
inline constexpr int kTokenBconst = 263;
inline constexpr int kTokenXconst = 264;
inline constexpr int kTokenIconst = 266;
inline constexpr int kTokenParam = 267;
inline constexpr int kTokenUescape = 685;

// The tokens of `sql`; nullopt if it does not lex. Iterative: safe for any nesting.
std::optional<std::vector<SqlToken>> ScanSql(std::string_view sql);

// Decodes a pg_query ScanResult protobuf (pg_query.proto: ScanResult { repeated ScanToken
// tokens = 2 }; ScanToken { int32 start = 1; int32 end = 2; Token token = 4; }). Bounds-checked;
// nullopt on malformed input. Exposed for tests.
std::optional<std::vector<SqlToken>> DecodeScanResult(std::string_view protobuf);

// `normalized` is pg_query_normalize output, in which utility statements may still hold string
// constants ("NOTIFY c, 'payload'", "PREPARE p AS SELECT 'x'"): replaces each string, bit-string
// and hex constant with the next free $n. Text without a quote or dollar quote is returned as is
// without scanning (the common case). If the text does not lex, returns nullopt.
std::optional<std::string> ReplaceRemainingLiterals(std::string_view normalized);

// A server error message as the audit may keep it when literal capture is off. Quoted parts
// ("...", and the typographic quotes translated messages use) whose text does not occur in
// `known_text` (the normalized statement, which holds identifiers but no literals) become "…":
// `invalid input syntax for type integer: "ssn-1"` keeps its shape, `relation "orders" does not
// exist` keeps the name. Byte sequences (0xe2 0x28) become 0x…. Messages PL/pgSQL code raised
// itself (SQLSTATE P0001 raise_exception, P0004 assert_failure) are arbitrary text and are
// replaced whole.
std::string RedactErrorMessage(std::string_view message, std::string_view sqlstate, std::string_view known_text);

}  // namespace pgward::inspect
