// The startup-parameter allow-list and Postgres's client encoding names (src/common/encnames.c).
#include "common/pgwire/startup_parameters.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pgward::pgwire {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

struct EncodingName {
  std::string_view cleaned;    // as clean_encoding_name leaves it
  std::string_view canonical;  // pg_enc2name_tbl
  bool ascii_safe;             // a server (backend) encoding
};

// pg_encname_tbl, with each encoding's class from pg_wchar.h (PG_VALID_BE_ENCODING).
constexpr EncodingName kEncodings[] = {
    {"abc", "WIN1258", true},          {"alt", "WIN866", true},
    {"big5", "BIG5", false},           {"euccn", "EUC_CN", true},
    {"eucjis2004", "EUC_JIS_2004", true}, {"eucjp", "EUC_JP", true},
    {"euckr", "EUC_KR", true},         {"euctw", "EUC_TW", true},
    {"gb18030", "GB18030", false},     {"gbk", "GBK", false},
    {"iso88591", "LATIN1", true},      {"iso885910", "LATIN6", true},
    {"iso885913", "LATIN7", true},     {"iso885914", "LATIN8", true},
    {"iso885915", "LATIN9", true},     {"iso885916", "LATIN10", true},
    {"iso88592", "LATIN2", true},      {"iso88593", "LATIN3", true},
    {"iso88594", "LATIN4", true},      {"iso88595", "ISO_8859_5", true},
    {"iso88596", "ISO_8859_6", true},  {"iso88597", "ISO_8859_7", true},
    {"iso88598", "ISO_8859_8", true},  {"iso88599", "LATIN5", true},
    {"johab", "JOHAB", false},         {"koi8", "KOI8R", true},
    {"koi8r", "KOI8R", true},          {"koi8u", "KOI8U", true},
    {"latin1", "LATIN1", true},        {"latin10", "LATIN10", true},
    {"latin2", "LATIN2", true},        {"latin3", "LATIN3", true},
    {"latin4", "LATIN4", true},        {"latin5", "LATIN5", true},
    {"latin6", "LATIN6", true},        {"latin7", "LATIN7", true},
    {"latin8", "LATIN8", true},        {"latin9", "LATIN9", true},
    {"mskanji", "SJIS", false},        {"muleinternal", "MULE_INTERNAL", true},
    {"shiftjis", "SJIS", false},       {"shiftjis2004", "SHIFT_JIS_2004", false},
    {"sjis", "SJIS", false},           {"sqlascii", "SQL_ASCII", true},
    {"tcvn", "WIN1258", true},         {"tcvn5712", "WIN1258", true},
    {"uhc", "UHC", false},             {"unicode", "UTF8", true},
    {"utf8", "UTF8", true},            {"vscii", "WIN1258", true},
    {"win", "WIN1251", true},          {"win1250", "WIN1250", true},
    {"win1251", "WIN1251", true},      {"win1252", "WIN1252", true},
    {"win1253", "WIN1253", true},      {"win1254", "WIN1254", true},
    {"win1255", "WIN1255", true},      {"win1256", "WIN1256", true},
    {"win1257", "WIN1257", true},      {"win1258", "WIN1258", true},
    {"win866", "WIN866", true},        {"win874", "WIN874", true},
    {"win932", "SJIS", false},         {"win936", "GBK", false},
    {"win949", "UHC", false},          {"win950", "BIG5", false},
    {"windows1250", "WIN1250", true},  {"windows1251", "WIN1251", true},
    {"windows1252", "WIN1252", true},  {"windows1253", "WIN1253", true},
    {"windows1254", "WIN1254", true},  {"windows1255", "WIN1255", true},
    {"windows1256", "WIN1256", true},  {"windows1257", "WIN1257", true},
    {"windows1258", "WIN1258", true},  {"windows866", "WIN866", true},
    {"windows874", "WIN874", true},    {"windows932", "SJIS", false},
    {"windows936", "GBK", false},      {"windows949", "UHC", false},
    {"windows950", "BIG5", false},
};

// pg_char_to_encoding refuses names of NAMEDATALEN (64) bytes or more before cleaning.
constexpr size_t kMaxEncodingNameBytes = 63;

// The parameters that are passed, in their canonical spelling.
enum class Passed { kClientEncoding, kDateStyle, kIntervalStyle, kTimeZone, kExtraFloatDigits };
struct PassedName {
  std::string_view lower;
  std::string_view canonical;
  Passed which;
};
constexpr std::array<PassedName, 5> kPassed = {{
    {"client_encoding", "client_encoding", Passed::kClientEncoding},
    {"datestyle", "DateStyle", Passed::kDateStyle},
    {"intervalstyle", "IntervalStyle", Passed::kIntervalStyle},
    {"timezone", "TimeZone", Passed::kTimeZone},
    {"extra_float_digits", "extra_float_digits", Passed::kExtraFloatDigits},
}};

// Names pgward consumes or sets itself: never sent upstream, never an error.
constexpr std::array<std::string_view, 4> kOwnNames = {"user", "database", "application_name",
                                                       "fallback_application_name"};

constexpr std::string_view kPassedList =
    "client_encoding, DateStyle, IntervalStyle, TimeZone and extra_float_digits";

// A caller-chosen name echoed in an error: printable ASCII only, bounded.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > 64) out += "...";
  return out;
}

// Values go into the upstream startup packet verbatim: letters, digits and the punctuation
// real DateStyle, IntervalStyle and TimeZone values use ("ISO, MDY", "America/New_York",
// "UTC+01:30", "EST5EDT,M3.2.0,M11.1.0").
bool IsPlainValue(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '+' || c == '-' ||
           c == '_' || c == ',' || c == ' ' || c == ':' || c == '.';
  });
}

bool IsFalse(std::string_view value) {
  const std::string lower = absl::AsciiStrToLower(AV(value));
  return lower == "false" || lower == "off" || lower == "no" || lower == "0";
}

StartupParameterDecision Refuse(std::string_view name, std::string reason) {
  StartupParameterDecision decision;
  decision.action = StartupParameterAction::kRefuse;
  decision.name = std::string(name);
  decision.reason = std::move(reason);
  return decision;
}

StartupParameterDecision Drop(std::string_view name) {
  StartupParameterDecision decision;
  decision.action = StartupParameterAction::kDrop;
  decision.name = std::string(name);
  return decision;
}

StartupParameterDecision DecidePassed(const PassedName& passed, std::string_view value) {
  const std::string shown = Printable(passed.canonical);
  if (value.empty() || value.size() > kMaxPassedStartupValueBytes) {
    return Refuse(passed.canonical, absl::StrCat("the startup parameter ", shown, " must have a value of 1 to ",
                                                 kMaxPassedStartupValueBytes, " bytes"));
  }
  StartupParameterDecision decision;
  decision.action = StartupParameterAction::kPass;
  decision.name = std::string(passed.canonical);
  switch (passed.which) {
    case Passed::kClientEncoding: {
      auto pinned = PinnedClientEncoding(value);
      if (!pinned.ok()) return Refuse(passed.canonical, std::string(pinned.status().message()));
      decision.value = *pinned;
      return decision;
    }
    case Passed::kExtraFloatDigits: {
      // guc_tables.c: an integer from -15 to 3.
      int digits = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), digits);
      if (ec != std::errc() || end != value.data() + value.size() || digits < -15 || digits > 3) {
        return Refuse(passed.canonical, "the startup parameter extra_float_digits must be an integer from -15 to 3");
      }
      break;
    }
    case Passed::kDateStyle:
    case Passed::kIntervalStyle:
    case Passed::kTimeZone:
      if (!IsPlainValue(value)) {
        return Refuse(passed.canonical,
                      absl::StrCat("the startup parameter ", shown,
                                   " may hold only letters, digits, spaces and / + - _ , : ."));
      }
      break;
  }
  decision.value = std::string(value);
  return decision;
}

}  // namespace

ClientEncoding ClassifyClientEncoding(std::string_view name) {
  ClientEncoding result;
  if (name.empty() || name.size() > kMaxEncodingNameBytes) return result;
  // clean_encoding_name: keep letters and digits, lower-cased.
  std::string cleaned;
  for (char c : name) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      cleaned.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    }
  }
  for (const EncodingName& e : kEncodings) {
    if (e.cleaned != cleaned) continue;
    result.canonical = std::string(e.canonical);
    result.safety = e.ascii_safe ? ClientEncodingSafety::kAsciiSafe : ClientEncodingSafety::kClientOnly;
    break;
  }
  return result;
}

absl::StatusOr<std::string> PinnedClientEncoding(std::string_view requested) {
  if (requested.empty()) return std::string("UTF8");
  ClientEncoding encoding = ClassifyClientEncoding(requested);
  switch (encoding.safety) {
    case ClientEncodingSafety::kAsciiSafe:
      return encoding.canonical;
    case ClientEncodingSafety::kClientOnly:
      return absl::InvalidArgumentError(absl::StrCat(
          "client_encoding ", encoding.canonical,
          " is not supported through pgward: Postgres converts it before parsing, and pgward must parse "
          "exactly what Postgres runs; use UTF8 or another server encoding"));
    case ClientEncodingSafety::kUnknown:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("client_encoding \"", Printable(requested), "\" is not an encoding pgward knows; use UTF8"));
}

StartupParameterDecision DecideStartupParameter(std::string_view name, std::string_view value) {
  if (name.find('\0') != std::string_view::npos || value.find('\0') != std::string_view::npos) {
    return Refuse(name, "a startup parameter contains a NUL byte");
  }
  const std::string lower = absl::AsciiStrToLower(AV(name));
  for (const PassedName& passed : kPassed) {
    if (passed.lower == lower) return DecidePassed(passed, value);
  }
  if (std::find(kOwnNames.begin(), kOwnNames.end(), lower) != kOwnNames.end()) return Drop(name);
  // Protocol extensions (protocol section 55.2.1): pgward negotiates none, and the gateway
  // answers for itself; nothing of them is sent on.
  if (absl::StartsWith(lower, "_pq_.")) return Drop(name);
  if (lower == "options") {
    if (absl::StripAsciiWhitespace(AV(value)).empty()) return Drop(name);
    return Refuse(name,
                  "the startup parameter \"options\" (PGOPTIONS, -c settings) is not supported through "
                  "pgward, which sets the session's options itself; remove it, and use SET after connecting "
                  "if your grant allows it");
  }
  if (lower == "replication") {
    if (IsFalse(value)) return Drop(name);
    return Refuse(name, "replication connections are not supported through pgward");
  }
  return Refuse(name, absl::StrCat("the startup parameter \"", Printable(name),
                                   "\" is not supported through pgward (only ", AV(kPassedList),
                                   " reach the database); remove it from the connection settings, and use "
                                   "SET after connecting if your grant allows it"));
}

absl::StatusOr<FilteredStartupParameters> FilterStartupParameters(
    const std::vector<std::pair<std::string, std::string>>& parameters) {
  FilteredStartupParameters filtered;
  for (const auto& [name, value] : parameters) {
    StartupParameterDecision decision = DecideStartupParameter(name, value);
    switch (decision.action) {
      case StartupParameterAction::kRefuse:
        return absl::InvalidArgumentError(decision.reason);
      case StartupParameterAction::kDrop:
        filtered.dropped.push_back(std::move(decision.name));
        break;
      case StartupParameterAction::kPass: {
        auto same = std::find_if(filtered.passed.begin(), filtered.passed.end(),
                                 [&](const auto& p) { return p.first == decision.name; });
        if (same != filtered.passed.end()) filtered.passed.erase(same);
        filtered.passed.emplace_back(std::move(decision.name), std::move(decision.value));
        break;
      }
    }
  }
  return filtered;
}

}  // namespace pgward::pgwire
