// CatalogRules: what pgward knows about the names a statement uses -- server functions that write,
// signal other sessions or reach outside the database, monitoring views that show other sessions,
// and settings that carry the session's identity or decide how Postgres lexes SQL. Internal to inspect.
#pragma once

#include <optional>
#include <string_view>

#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {

// What calling a function needs beyond the statement's own class.
enum class FunctionEffect {
  kNone,
  kWrite,        // writes shared state: sequences, large objects, advisory locks, notifications
  kMaintenance,  // signals other backends or administers the server
  kCode,         // runs SQL the agent cannot see, or reaches server files, programs, other databases
  kMonitoring,   // shows other sessions' statements, locks or connections
};

// `name` is the last element of a FuncCall's funcname, as the parser gives it (unquoted
// identifiers are already folded to lower case). Compared case-insensitively, in any schema:
// a user function that shadows one of these names is refused too (fail closed).
// `arg_count` distinguishes overloads (ts_rewrite(query, text) runs SQL; the 3-argument form does not).
FunctionEffect EffectOfFunction(std::string_view name, size_t arg_count);

// Relations (views) that show other sessions' statements, literals, locks or connections.
bool IsMonitoringRelation(std::string_view relname);

// application_name, pgward.*, role, session_authorization: who Postgres thinks the session is.
bool IsIdentitySetting(std::string_view name);

// default_transaction_read_only, transaction_read_only.
bool IsReadOnlySetting(std::string_view name);

// standard_conforming_strings, backslash_quote, client_encoding (SET NAMES): settings the server's
// lexer or input decoding reads (src/backend/parser/scan.l, mbutils.c). escape_string_warning is
// read by the lexer too but only adds warnings, so it is not one of them.
bool IsLexingSetting(std::string_view name);

// True when `value` (a constant, already unquoted) keeps a lexing setting where pgward pins it, so
// libpg_query and the server still read SQL the same way: standard_conforming_strings on;
// backslash_quote off or safe_encoding; client_encoding UTF8 (Postgres spellings: "UTF8",
// "utf-8", "Unicode", ...). nullopt value (not a constant, DEFAULT, RESET) is never safe.
bool IsSafeLexingValue(std::string_view setting, std::optional<std::string_view> value);

// ASCII case-insensitive comparisons on std::string_view (absl::string_view is a distinct type
// in this Abseil build). Postgres folds setting and unquoted names the same way.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix);

// Postgres parse_bool: unique prefixes of true/yes/false/no, on/off, 1/0. nullopt if not a bool.
std::optional<bool> ParseBool(std::string_view word);

}  // namespace pgward::inspect
