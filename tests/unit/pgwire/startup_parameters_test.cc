// Tests for the startup-parameter allow-list and Postgres's client encoding names.
#include "common/pgwire/startup_parameters.h"

#include <catch2/catch.hpp>

#include <string>
#include <tuple>

namespace pgward::pgwire {
namespace {

using Action = StartupParameterAction;

TEST_CASE("allow-listed startup parameters pass in their canonical spelling", "[startup-parameters]") {
  auto [name, value, canonical, sent] = GENERATE(table<std::string, std::string, std::string, std::string>({
      {"DateStyle", "ISO, MDY", "DateStyle", "ISO, MDY"},
      {"datestyle", "SQL, DMY", "DateStyle", "SQL, DMY"},
      {"TimeZone", "America/Argentina/Buenos_Aires", "TimeZone", "America/Argentina/Buenos_Aires"},
      {"TIMEZONE", "UTC+01:30", "TimeZone", "UTC+01:30"},
      {"timezone", "EST5EDT,M3.2.0,M11.1.0", "TimeZone", "EST5EDT,M3.2.0,M11.1.0"},
      {"IntervalStyle", "iso_8601", "IntervalStyle", "iso_8601"},
      {"extra_float_digits", "3", "extra_float_digits", "3"},
      {"extra_float_digits", "-15", "extra_float_digits", "-15"},
      {"client_encoding", "UTF8", "client_encoding", "UTF8"},
      {"client_encoding", "utf-8", "client_encoding", "UTF8"},
      {"client_encoding", "Unicode", "client_encoding", "UTF8"},
      {"client_encoding", "SQL_ASCII", "client_encoding", "SQL_ASCII"},
      {"client_encoding", "ISO-8859-1", "client_encoding", "LATIN1"},
      {"client_encoding", "win1252", "client_encoding", "WIN1252"},
      {"client_encoding", "EUC_JP", "client_encoding", "EUC_JP"},
  }));
  StartupParameterDecision decision = DecideStartupParameter(name, value);
  INFO(name << "=" << value << ": " << decision.reason);
  CHECK(decision.action == Action::kPass);
  CHECK(decision.name == canonical);
  CHECK(decision.value == sent);
}

TEST_CASE("pgward's own startup parameters and no-ops are dropped", "[startup-parameters]") {
  auto [name, value] = GENERATE(table<std::string, std::string>({
      {"user", "anyone"},
      {"database", "shop"},
      {"application_name", "my-app"},
      {"Application_Name", "my-app"},
      {"fallback_application_name", "psql"},
      {"_pq_.compression", "on"},
      {"options", ""},
      {"options", "   "},
      {"replication", "false"},
      {"replication", "off"},
      {"replication", "0"},
  }));
  INFO(name << "=" << value);
  CHECK(DecideStartupParameter(name, value).action == Action::kDrop);
}

TEST_CASE("every other startup parameter is refused, naming it", "[startup-parameters]") {
  auto [name, value, named] = GENERATE(table<std::string, std::string, std::string>({
      {"options", "-c default_transaction_read_only=off", "\"options\""},
      {"options", "-c search_path=evil", "\"options\""},
      {"default_transaction_read_only", "off", "default_transaction_read_only"},
      {"transaction_read_only", "off", "transaction_read_only"},
      {"search_path", "evil", "search_path"},
      {"role", "postgres", "role"},
      {"session_authorization", "postgres", "session_authorization"},
      {"standard_conforming_strings", "off", "standard_conforming_strings"},
      {"backslash_quote", "on", "backslash_quote"},
      {"pgward.principal", "mallory", "pgward.principal"},
      {"statement_timeout", "0", "statement_timeout"},
      {"replication", "database", "replication"},
      {"replication", "true", "replication"},
  }));
  StartupParameterDecision decision = DecideStartupParameter(name, value);
  INFO(name << "=" << value);
  CHECK(decision.action == Action::kRefuse);
  CHECK_THAT(decision.reason, Catch::Contains(named));
}

TEST_CASE("allow-listed parameters with values that are not plain are refused", "[startup-parameters]") {
  auto [name, value] = GENERATE(table<std::string, std::string>({
      {"DateStyle", "ISO' -c role=postgres"},
      {"DateStyle", ""},
      {"TimeZone", "UTC;DROP"},
      {"TimeZone", "<+0330>-3:30"},
      {"TimeZone", std::string(65, 'a')},
      {"IntervalStyle", "iso\\8601"},
      {"extra_float_digits", "4"},
      {"extra_float_digits", "-16"},
      {"extra_float_digits", "2x"},
      {"extra_float_digits", ""},
      {"client_encoding", "no-such-encoding"},
      {"client_encoding", std::string(64, 'u')},
      {"DateStyle", std::string("ISO\0x", 5)},
  }));
  INFO(name << "=" << value);
  CHECK(DecideStartupParameter(name, value).action == Action::kRefuse);
}

TEST_CASE("a value at the length bound passes, one byte more is refused", "[startup-parameters][bounds]") {
  CHECK(DecideStartupParameter("TimeZone", std::string(kMaxPassedStartupValueBytes, 'a')).action == Action::kPass);
  CHECK(DecideStartupParameter("TimeZone", std::string(kMaxPassedStartupValueBytes + 1, 'a')).action ==
        Action::kRefuse);
}

TEST_CASE("client-only encodings and their aliases are refused", "[startup-parameters][encoding]") {
  auto [name, canonical] = GENERATE(table<std::string, std::string>({
      {"SJIS", "SJIS"},
      {"Shift_JIS", "SJIS"},
      {"MS_Kanji", "SJIS"},
      {"windows-932", "SJIS"},
      {"win932", "SJIS"},
      {"SHIFT_JIS_2004", "SHIFT_JIS_2004"},
      {"big5", "BIG5"},
      {"windows-950", "BIG5"},
      {"GBK", "GBK"},
      {"cp936", ""},  // not a Postgres alias at all: unknown, also refused
      {"win936", "GBK"},
      {"UHC", "UHC"},
      {"windows949", "UHC"},
      {"GB-18030", "GB18030"},
      {"JOHAB", "JOHAB"},
  }));
  INFO(name);
  ClientEncoding encoding = ClassifyClientEncoding(name);
  CHECK(encoding.canonical == canonical);
  CHECK(encoding.safety != ClientEncodingSafety::kAsciiSafe);
  auto pinned = PinnedClientEncoding(name);
  REQUIRE_FALSE(pinned.ok());
  CHECK_THAT(std::string(pinned.status().message()), Catch::Contains("client_encoding"));
  StartupParameterDecision decision = DecideStartupParameter("client_encoding", name);
  CHECK(decision.action == Action::kRefuse);
}

TEST_CASE("server encodings are ASCII-safe and keep Postgres's name", "[startup-parameters][encoding]") {
  auto [name, canonical] = GENERATE(table<std::string, std::string>({
      {"UTF8", "UTF8"},           {"sql-ascii", "SQL_ASCII"},   {"latin9", "LATIN9"},
      {"ISO_8859_5", "ISO_8859_5"}, {"iso8859-16", "LATIN10"},  {"KOI8", "KOI8R"},
      {"koi8-u", "KOI8U"},        {"EUC-KR", "EUC_KR"},         {"euc_jis_2004", "EUC_JIS_2004"},
      {"MULE_INTERNAL", "MULE_INTERNAL"}, {"windows-1251", "WIN1251"}, {"WIN", "WIN1251"},
      {"ALT", "WIN866"},          {"TCVN5712", "WIN1258"},
  }));
  INFO(name);
  ClientEncoding encoding = ClassifyClientEncoding(name);
  CHECK(encoding.safety == ClientEncodingSafety::kAsciiSafe);
  CHECK(encoding.canonical == canonical);
}

TEST_CASE("no client_encoding asked for pins UTF8", "[startup-parameters][encoding]") {
  auto pinned = PinnedClientEncoding("");
  REQUIRE(pinned.ok());
  CHECK(*pinned == "UTF8");
}

TEST_CASE("a whole parameter list keeps the allowed ones in order, last value winning", "[startup-parameters]") {
  auto filtered = FilterStartupParameters({{"user", "u"},
                                           {"database", "d"},
                                           {"DateStyle", "ISO"},
                                           {"client_encoding", "utf-8"},
                                           {"application_name", "app"},
                                           {"datestyle", "SQL"}});
  REQUIRE(filtered.ok());
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  CHECK(filtered->passed == Pairs{{"client_encoding", "UTF8"}, {"DateStyle", "SQL"}});
  CHECK(filtered->dropped == std::vector<std::string>{"user", "database", "application_name"});
}

TEST_CASE("a whole parameter list with one refused parameter is refused", "[startup-parameters]") {
  auto filtered = FilterStartupParameters({{"user", "u"}, {"DateStyle", "ISO"}, {"search_path", "evil"}});
  REQUIRE_FALSE(filtered.ok());
  CHECK(filtered.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(filtered.status().message()), Catch::Contains("search_path"));
}

TEST_CASE("a refused name is echoed printable and bounded", "[startup-parameters]") {
  StartupParameterDecision decision = DecideStartupParameter(std::string("bad\x01name") + std::string(200, 'x'), "v");
  REQUIRE(decision.action == Action::kRefuse);
  CHECK(decision.reason.find('\x01') == std::string::npos);
  CHECK(decision.reason.size() < 400);
}

}  // namespace
}  // namespace pgward::pgwire
