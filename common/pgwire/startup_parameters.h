// The caller startup parameters pgward lets reach Postgres: a fixed allow-list with checked
// values, shared by the gateway (which builds the grant) and the agent (which re-applies it).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace pgward::pgwire {

// Longest startup parameter value pgward passes on. Real values (time zone names, DateStyle,
// encodings) are a few dozen bytes; the bound keeps the upstream startup packet small.
inline constexpr size_t kMaxPassedStartupValueBytes = 64;

// What happens to one caller startup parameter. Postgres applies every startup parameter as a
// setting, AFTER the agent's own "options" (postinit.c process_startup_options), so anything
// not on the allow-list could undo what pgward pins (read-only mode, identity, lexing).
enum class StartupParameterAction {
  kPass,    // on the allow-list with a plain value: sent upstream
  kDrop,    // pgward's own (user, database, application_name, ...) or a no-op: not sent
  kRefuse,  // anything else: the login ends with FATAL 08P01 naming the parameter
};

struct StartupParameterDecision {
  StartupParameterAction action = StartupParameterAction::kRefuse;
  std::string name;    // kPass: the canonical spelling ("DateStyle"); otherwise as sent
  std::string value;   // kPass: the value to send (client_encoding in canonical form)
  std::string reason;  // kRefuse: which parameter and why, safe to show the caller
};

// Passed: client_encoding (an ASCII-safe server encoding, see ClassifyClientEncoding),
// DateStyle, IntervalStyle, TimeZone, extra_float_digits (names case-insensitive, as Postgres
// treats setting names). Dropped: user, database, application_name and
// fallback_application_name (recorded by the gateway, never sent: pgward sets its own),
// protocol extensions "_pq_.*", an empty "options", "replication" with a false value.
// Refused: everything else, including "options" with content, "replication" on, role,
// search_path, session_authorization, default_transaction_read_only, standard_conforming_strings.
StartupParameterDecision DecideStartupParameter(std::string_view name, std::string_view value);

struct FilteredStartupParameters {
  // Parameters to send upstream, in the caller's order; for a repeated name the last value
  // wins (as Postgres applies them in order).
  std::vector<std::pair<std::string, std::string>> passed;
  std::vector<std::string> dropped;  // names, for a log line
};

// Applies DecideStartupParameter to a whole list. The first refusal wins: InvalidArgument
// whose message is that decision's reason.
absl::StatusOr<FilteredStartupParameters> FilterStartupParameters(
    const std::vector<std::pair<std::string, std::string>>& parameters);

// How an encoding name is treated as a client_encoding. Postgres converts a query from the
// client encoding to the server encoding BEFORE lexing it; client-only encodings (SJIS, BIG5,
// GBK, UHC, GB18030, JOHAB, SHIFT_JIS_2004) have multibyte characters whose trail byte may be
// 0x5c ('\\') or 0x27 ('\''), so the bytes pgward's parser sees and the text Postgres lexes
// could disagree about where a string literal ends. Server encodings are ASCII-safe: every
// byte below 0x80 is that ASCII character (pg_wchar.h PG_VALID_BE_ENCODING).
enum class ClientEncodingSafety { kAsciiSafe, kClientOnly, kUnknown };
struct ClientEncoding {
  ClientEncodingSafety safety = ClientEncodingSafety::kUnknown;
  std::string canonical;  // Postgres's own name ("UTF8", "LATIN1", "SJIS"); "" when unknown
};
// Looks `name` up as Postgres's pg_char_to_encoding does: letters and digits only, lower
// case ("UTF-8", "utf_8" and "Unicode" all mean UTF8; "Shift_JIS" means SJIS).
ClientEncoding ClassifyClientEncoding(std::string_view name);

// The client_encoding the agent pins upstream for a caller that asked for `requested`
// (empty: none asked, UTF8). InvalidArgument (safe to show) for client-only or unknown names.
absl::StatusOr<std::string> PinnedClientEncoding(std::string_view requested);

}  // namespace pgward::pgwire
