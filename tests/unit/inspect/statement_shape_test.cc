// Tests for the shape cache (statement_shape.h): an analysis reused for a text that differs only
// in its constants equals a fresh analysis of that text, field by field, and decisions that read a
// constant are never reused.
#include "agent/inspect/statement_shape.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {
namespace {

void RequireSame(const std::vector<AnalyzedStatementPtr>& got, const std::vector<AnalyzedStatementPtr>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const AnalyzedStatement& a = *got[i];
    const AnalyzedStatement& b = *want[i];
    INFO("statement " << i << ": " << b.text);
    CHECK(a.text == b.text);
    CHECK(a.normalized == b.normalized);
    CHECK(a.fingerprint == b.fingerprint);
    CHECK(a.statement_class == b.statement_class);
    CHECK(a.required_classes == b.required_classes);
    CHECK(a.class_note == b.class_note);
    CHECK(a.parsed == b.parsed);
    CHECK(a.parse_error == b.parse_error);
    CHECK(a.limit == b.limit);
    CHECK(a.tampers_identity == b.tampers_identity);
    CHECK(a.changes_read_only == b.changes_read_only);
    CHECK(a.changes_lexing == b.changes_lexing);
    CHECK(a.monitoring == b.monitoring);
    CHECK(a.plain_application_name_set == b.plain_application_name_set);
    CHECK(a.deallocate_name == b.deallocate_name);
    CHECK(a.resets_session == b.resets_session);
  }
}

std::vector<AnalyzedStatementPtr> Fresh(const std::string& sql, AnalyzerLimits limits = {}) {
  SqlAnalyzer fresh(16, limits);  // nothing cached: a full analysis
  return fresh.AnalyzeQuery(sql);
}

// Constants for the placeholders of a template: %i integer, %s '...', %e E'...', %f numeric,
// %b B'...', %x X'...', %d dollar-quoted. Chosen to vary length, quotes, backslashes, digits,
// signs, and the integer/numeric boundary (2147483648 lexes as numeric).
const std::vector<std::string>& ValuesFor(char kind) {
  static const std::vector<std::string> ints = {"0",   "1",      "7",          "42",         "48213",
                                                "-3", "999999", "2147483647", "2147483648", "00012"};
  static const std::vector<std::string> strings = {
      "''", "'a'", "'it''s'", "'\\'", "'x\\y'", "'123'", "'with \"dq\"'", "'a'\n'b'", "'\xc3\xbcn'", "'; select 1; '"};
  static const std::vector<std::string> escapes = {"E''",      "E'\\\\'",   "E'\\''", "E'\\n'",
                                                   "e'\\tab'", "E'\\x41'", "E'it''s'"};
  static const std::vector<std::string> floats = {"1.5", "0.0", "1e10", ".5", "3.14159", "1E-3"};
  static const std::vector<std::string> bits = {"B'101'", "B'0'", "B''", "B'1111000011110000'"};
  static const std::vector<std::string> hexes = {"X'ff'", "X'0A'", "X''"};
  static const std::vector<std::string> dollars = {"$$x$$", "$$it's$$", "$$1$$", "$$ 'a' $$"};
  switch (kind) {
    case 'i': return ints;
    case 's': return strings;
    case 'e': return escapes;
    case 'f': return floats;
    case 'b': return bits;
    case 'x': return hexes;
    default: return dollars;
  }
}

// Variant n of a template: placeholder k takes value (n + 3k) of its kind, so the combinations vary.
std::string Variant(const std::string& pattern, size_t n) {
  std::string out;
  size_t placeholder = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      const auto& values = ValuesFor(pattern[++i]);
      out += values[(n + 3 * placeholder++) % values.size()];
    } else {
      out += pattern[i];
    }
  }
  return out;
}

constexpr size_t kVariants = 24;

TEST_CASE("a literal variant is analyzed exactly as a fresh analysis of its own text", "[shape]") {
  auto [pattern, reused] = GENERATE(table<std::string, bool>({
      // pgbench's scripts as -M simple sends them.
      {"SELECT abalance FROM pgbench_accounts WHERE aid = %i;", true},
      {"UPDATE pgbench_accounts SET abalance = abalance + %i WHERE aid = %i;", true},
      {"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%i, %i, %i, %i, CURRENT_TIMESTAMP);", true},
      {"BEGIN; SELECT abalance FROM pgbench_accounts WHERE aid = %i; END;", true},
      // Strings with quotes and backslashes, E'' strings, other constant kinds, casts.
      {"select * from t where name = %s and id = %i", true},
      {"select * from t where name = %e", true},
      {"select %f, %b, %x", true},
      {"select %s::regclass, %i", true},
      {"select N%s, %i", true},  // N'...' lexes as the keyword NCHAR and a plain string
      {"select * from t where a = - %i and b = -%f", true},
      // Comments holding digits and quotes stay part of the shape.
      {"select 1 /* 42 */ + %i -- 7 and 'x'\n", true},
      // Multi-statement texts: each statement gets its own text.
      {"select %i; select %s", true},
      {"  insert into t values (%i) ;\n update t set a = %i where b = %s;  ", true},
      {"with x as (delete from t where id = %i returning *) select * from x", true},
      {"explain select * from t where a = %i", true},
      {"select nextval('s'), %i", true},
      {"select * from pg_stat_activity where pid = %i", true},
      {"select * from t where b = %s and c in (%i, %i) limit %i offset %i", true},
      // The decision reads a constant: identity, read-only and lexing settings, EXPLAIN options.
      {"select set_config('application_name', %s, false)", false},
      {"select set_config('work_mem', %s, false)", false},
      {"SET application_name = %s", false},
      {"SET work_mem = %i", false},
      {"SET standard_conforming_strings = %s", false},
      {"set client_encoding = %s", false},
      {"SET default_transaction_read_only = %i", false},
      {"set search_path = %s", false},
      {"explain (analyze %i) delete from t where a = 1", false},
      {"begin transaction read write; select %i", false},
      {"begin read only; select %i", false},
      // The grammar or the normalizer uses the value itself.
      {"select x::float(%i) from t", false},
      {"select x::varchar(%i) from t", false},
      {"notify c, %s", false},
      {"copy t from stdin with (delimiter %s)", false},
      // Not cached at all: dollar quotes, U& strings.
      {"select %d", false},
      {"select U&'d\\0061t' || %s", false},
  }));
  INFO(pattern);
  SqlAnalyzer cached;
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t n = 0; n < kVariants; ++n) {
      const std::string sql = Variant(pattern, n);
      INFO("variant: " << sql);
      RequireSame(cached.AnalyzeQuery(sql), Fresh(sql));
    }
  }
  const AnalyzerStats stats = cached.stats();
  if (reused) {
    CHECK(stats.shape_hits > 0);
  } else {
    CHECK(stats.shape_hits == 0);
  }
}

TEST_CASE("a pgbench select with a new number is served from its shape with its own text", "[shape]") {
  SqlAnalyzer analyzer;
  analyzer.AnalyzeQuery("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
  auto second = analyzer.AnalyzeQuery("SELECT abalance FROM pgbench_accounts WHERE aid = 7;");
  REQUIRE(second.size() == 1);
  CHECK(second[0]->text == "SELECT abalance FROM pgbench_accounts WHERE aid = 7");
  CHECK(second[0]->normalized == "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
  CHECK(second[0]->statement_class == StatementClass::kRead);
  const AnalyzerStats stats = analyzer.stats();
  CHECK(stats.full_analyses == 1);
  CHECK(stats.shape_hits == 1);
}

TEST_CASE("set_config on application_name is analyzed afresh for every value", "[shape]") {
  SqlAnalyzer analyzer;
  for (const char* value : {"'1'", "'2'", "'pgward'", "'x'"}) {
    const std::string sql = std::string("select set_config('application_name', ") + value + ", false)";
    auto got = analyzer.AnalyzeQuery(sql);
    REQUIRE(got.size() == 1);
    CHECK(got[0]->tampers_identity);
    RequireSame(got, Fresh(sql));
  }
  CHECK(analyzer.stats().shape_hits == 0);
  CHECK(analyzer.stats().full_analyses == 4);
}

TEST_CASE("SET of a lexing setting is decided from each value", "[shape]") {
  SqlAnalyzer analyzer;
  auto on = analyzer.AnalyzeQuery("SET standard_conforming_strings = 'on'");
  auto off = analyzer.AnalyzeQuery("SET standard_conforming_strings = 'off'");
  REQUIRE(on.size() == 1);
  REQUIRE(off.size() == 1);
  CHECK_FALSE(on[0]->changes_lexing);
  CHECK(off[0]->changes_lexing);
  CHECK(analyzer.stats().shape_hits == 0);
}

TEST_CASE("EXPLAIN (ANALYZE 0) and (ANALYZE 1) are never one shape's analysis", "[shape]") {
  SqlAnalyzer analyzer;
  auto plan = analyzer.AnalyzeQuery("explain (analyze 0) delete from t");
  auto runs = analyzer.AnalyzeQuery("explain (analyze 1) delete from t");
  CHECK(plan[0]->statement_class == StatementClass::kRead);
  CHECK(runs[0]->statement_class == StatementClass::kWrite);
  CHECK(analyzer.stats().shape_hits == 0);
}

TEST_CASE("constants of different kinds never share a shape", "[shape]") {
  auto [a, b] = GENERATE(table<std::string, std::string>({
      {"select 1", "select 1.0"},
      {"select 1", "select 2147483648"},
      {"select 'a'", "select E'a'"},
      {"select 'a'", "select B'1'"},
      {"select B'1'", "select X'1'"},
      {"select 'a'", "select e'a'"},
      {"select 1", "select '1'"},
      {"select - 1", "select 1"},
      {"select 1 ", "select 1"},
  }));
  auto shape_a = ShapeOfText(a);
  auto shape_b = ShapeOfText(b);
  REQUIRE(shape_a.has_value());
  REQUIRE(shape_b.has_value());
  CHECK(shape_a->key != shape_b->key);
}

TEST_CASE("texts of the same shape have equal keys", "[shape]") {
  auto a = ShapeOfText("select * from t where a = 1 and b = 'x' -- 5\n");
  auto b = ShapeOfText("select * from t where a = 123456 and b = 'it''s' -- 5\n");
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->key == b->key);
  CHECK(a->constants.size() == 2);
}

TEST_CASE("unusual constants and texts without constants have no shape", "[shape]") {
  auto sql = GENERATE(as<std::string>{}, "select U&'d\\0061t'", "select U&\"a\" from t", "select $$x$$",
                      "select $t$x$t$", "select a from t", "select 'unterminated",
                      "-- 1\n");
  CHECK_FALSE(ShapeOfText(sql).has_value());
}

TEST_CASE("size limits apply to each text, not to the shape", "[shape]") {
  SECTION("max_statement_bytes") {
    AnalyzerLimits limits;
    limits.max_statement_bytes = 64;
    SqlAnalyzer analyzer(16, limits);
    analyzer.AnalyzeQuery("select * from t where name = 'x'");
    const std::string long_text = "select * from t where name = '" + std::string(100, 'y') + "'";
    auto got = analyzer.AnalyzeQuery(long_text);
    REQUIRE(got.size() == 1);
    CHECK(got[0]->limit == AnalysisLimit::kTooLarge);
    RequireSame(got, Fresh(long_text, limits));
  }
  SECTION("max_tree_bytes") {
    AnalyzerLimits limits;
    limits.max_tree_bytes = 2000;
    SqlAnalyzer analyzer(16, limits);
    auto short_result = analyzer.AnalyzeQuery("select * from t where name = 'x'");
    REQUIRE(short_result[0]->parsed);
    const std::string long_text = "select * from t where name = '" + std::string(3000, 'y') + "'";
    auto got = analyzer.AnalyzeQuery(long_text);
    REQUIRE(got.size() == 1);
    CHECK(got[0]->limit == AnalysisLimit::kTooLarge);
    RequireSame(got, Fresh(long_text, limits));
  }
}

TEST_CASE("a multi-statement variant keeps each statement's own text", "[shape]") {
  SqlAnalyzer analyzer;
  analyzer.AnalyzeQuery("select 1; select 'a' ; update t set a = 2");
  auto got = analyzer.AnalyzeQuery("select 1000; select 'it''s' ; update t set a = 55");
  REQUIRE(got.size() == 3);
  CHECK(got[0]->text == "select 1000");
  CHECK(got[1]->text == "select 'it''s'");
  CHECK(got[2]->text == "update t set a = 55");
  CHECK(got[2]->statement_class == StatementClass::kWrite);
  CHECK(analyzer.stats().shape_hits == 1);
}

}  // namespace
}  // namespace pgward::inspect
