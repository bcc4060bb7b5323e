// Tests for SqlAnalyzer: classification, identity/read-only tamper flags, normalization,
// fingerprints, splitting and unparseable input, all through the real libpg_query parser.
#include "agent/inspect/sql_analyzer.h"

#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

namespace pgward::inspect {
namespace {

AnalyzedStatementPtr One(SqlAnalyzer& analyzer, const std::string& sql) {
  auto statements = analyzer.AnalyzeQuery(sql);
  REQUIRE(statements.size() == 1);
  return statements.front();
}

TEST_CASE("statements are classified by the top node of their parse tree", "[analyzer]") {
  using C = StatementClass;
  auto [sql, expected] = GENERATE(table<std::string, C>({
      {"select 1", C::kRead},
      {"SELECT * FROM t WHERE id = 5", C::kRead},
      {"select a from t union select b from u", C::kRead},
      {"values (1), (2)", C::kRead},
      {"with x as (select 1) select * from x", C::kRead},
      {"select * from t for update", C::kWrite},
      {"select * from t for share skip locked", C::kWrite},
      {"select * from (select * from t for update) s", C::kWrite},
      {"select 1 into newtable", C::kDdl},
      {"select * into temp t2 from t", C::kDdl},
      {"insert into t values (1)", C::kWrite},
      {"update t set a = 1", C::kWrite},
      {"delete from t where a = 1", C::kWrite},
      {"merge into t using s on t.id = s.id when matched then update set a = s.a", C::kWrite},
      {"with a as (insert into t values (1) returning *) select * from a", C::kWrite},
      {"with d as (delete from t returning *) select count(*) from d", C::kWrite},
      {"with u as (update t set a = 2 returning *) insert into log select * from u", C::kWrite},
      {"truncate t", C::kWrite},
      {"lock table t in access exclusive mode", C::kWrite},
      {"explain select * from t", C::kRead},
      {"explain delete from t", C::kRead},
      {"explain analyze select 1", C::kRead},
      {"explain analyze delete from t", C::kWrite},
      {"explain (analyze, verbose) insert into t values (1)", C::kWrite},
      {"explain (analyze false) delete from t", C::kRead},
      {"explain analyze create table x as select 1", C::kDdl},
      // defGetBoolean takes integers, and the last ANALYZE option wins (explain.c).
      {"explain (analyze 1) delete from t", C::kWrite},
      {"explain (analyze 0) delete from t", C::kRead},
      {"explain (analyze 'on') delete from t", C::kWrite},
      {"explain (analyze false, analyze true) delete from t", C::kWrite},
      {"explain (analyze false, analyze 1) delete from t", C::kWrite},
      {"explain (analyze true, analyze false) delete from t", C::kWrite},  // fail closed: any ANALYZE that may be true
      {"explain (analyze off, verbose) delete from t", C::kRead},
      {"copy t from stdin", C::kCopyIn},
      {"copy t (a, b) from stdin with (format csv)", C::kCopyIn},
      {"copy t to stdout", C::kCopyOut},
      {"copy (select * from t) to stdout", C::kCopyOut},
      {"begin", C::kTransaction},
      {"start transaction isolation level serializable", C::kTransaction},
      {"commit", C::kTransaction},
      {"rollback to savepoint s", C::kTransaction},
      {"savepoint s", C::kTransaction},
      {"set search_path = public", C::kSession},
      {"show work_mem", C::kSession},
      {"reset all", C::kSession},
      {"discard all", C::kSession},
      {"prepare p as select 1", C::kSession},
      {"deallocate p", C::kSession},
      {"listen chan", C::kWrite},
      {"notify chan, 'x'", C::kWrite},
      {"unlisten *", C::kSession},
      {"execute p", C::kUnknown},
      {"create table t (a int)", C::kDdl},
      {"create table t2 as select * from t", C::kDdl},
      {"create index on t (a)", C::kDdl},
      {"create view v as select 1", C::kDdl},
      {"create function f() returns int language sql as 'select 1'", C::kProcedure},
      {"create or replace procedure p() language sql as 'select 1'", C::kProcedure},
      {"alter function f() security definer", C::kProcedure},
      {"create trigger tr before insert on t for each row execute function f()", C::kProcedure},
      {"create event trigger e on ddl_command_start execute function f()", C::kProcedure},
      {"create rule r as on insert to t do also delete from u", C::kProcedure},
      {"create operator ### (rightarg = text, function = pg_read_file)", C::kProcedure},
      {"create aggregate a (sfunc = f, stype = int)", C::kProcedure},
      {"create cast (text as int) with function f(text)", C::kProcedure},
      {"create language plsample", C::kProcedure},
      {"create extension dblink", C::kProcedure},
      {"create server s foreign data wrapper postgres_fdw", C::kProcedure},
      {"create foreign table ft (a int) server s", C::kProcedure},
      {"alter system set work_mem = '1MB'", C::kProcedure},
      {"copy t to program 'gzip > /tmp/x'", C::kProcedure},
      {"copy t from '/etc/passwd'", C::kProcedure},
      {"copy t to '/tmp/out'", C::kProcedure},
      {"create collation c (locale = 'C')", C::kDdl},
      {"create text search dictionary d (template = simple)", C::kDdl},
      {"drop function f()", C::kDdl},
      {"alter table t add column b int", C::kDdl},
      {"drop table t", C::kDdl},
      {"alter table t rename to u", C::kDdl},
      {"comment on table t is 'x'", C::kDdl},
      {"create schema s", C::kDdl},
      {"grant select on t to bob", C::kPrivilege},
      {"revoke select on t from bob", C::kPrivilege},
      {"grant admin to bob", C::kPrivilege},
      {"create role bob login", C::kPrivilege},
      {"alter role bob superuser", C::kPrivilege},
      {"drop role bob", C::kPrivilege},
      {"vacuum t", C::kMaintenance},
      {"analyze t", C::kMaintenance},
      {"checkpoint", C::kMaintenance},
      {"cluster t using t_pkey", C::kMaintenance},
      {"reindex table t", C::kMaintenance},
      {"load 'auto_explain'", C::kProcedure},
      {"call proc(1)", C::kProcedure},
      {"do $$ begin perform 1; end $$", C::kProcedure},
      {"declare c cursor for select * from t", C::kRead},
      {"fetch 10 from c", C::kRead},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  CHECK(s->parsed);
  CHECK(StatementClassName(s->statement_class) == StatementClassName(expected));
}

TEST_CASE("statement class names round-trip", "[analyzer]") {
  for (std::string_view name : {"read", "write", "ddl", "transaction", "session", "copy_in", "copy_out", "privilege",
                                "maintenance", "procedure", "unknown"}) {
    auto c = StatementClassFromName(name);
    REQUIRE(c.has_value());
    CHECK(StatementClassName(*c) == name);
  }
  CHECK(StatementClassFromName("code") == StatementClass::kProcedure);  // an alias
  CHECK_FALSE(StatementClassFromName("READ").has_value());
  CHECK_FALSE(StatementClassFromName("").has_value());
}

TEST_CASE("changing application_name or pgward settings tampers with identity", "[analyzer]") {
  auto [sql, tampers] = GENERATE(table<std::string, bool>({
      {"SET application_name = 'me'", true},
      {"set application_name to default", true},
      {"SET APPLICATION_NAME = 'me'", true},
      {"set local pgward.x = 1", true},
      {"set session pgward.principal = 'alice'", true},
      {"RESET pgward.principal", true},
      {"reset application_name", true},
      {"set \"PGWARD.principal\" = 'x'", true},
      {"select set_config('pgward.principal', 'x', false)", true},
      {"select set_config('application_name', 'x', false)", true},
      {"select pg_catalog.set_config('pgward.session_id', 'x', true)", true},
      {"select * from t where a = (select set_config('pgward.principal', 'x', false))", true},
      {"select set_config(some_var, 'x', false) from t", true},
      {"select set_config('pgward' || '.principal', 'x', false)", true},
      {"select set_config('work_mem', '64MB', false)", false},
      {"alter system set application_name = 'x'", true},
      {"alter role bob set pgward.principal = 'x'", true},
      {"alter database d set pgward.principal = 'x'", true},
      {"alter role bob set work_mem = '1MB'", false},
      {"update pg_settings set setting = 'x' where name = 'application_name'", true},
      {"SET search_path = public", false},
      {"RESET ALL", false},
      {"discard all", false},
      {"select current_setting('pgward.principal')", false},
      {"show application_name", false},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  CHECK(s->parsed);
  CHECK(s->tampers_identity == tampers);
}

TEST_CASE("statements that could turn read-only off are flagged", "[analyzer]") {
  auto [sql, changes] = GENERATE(table<std::string, bool>({
      {"set default_transaction_read_only = off", true},
      {"set default_transaction_read_only = false", true},
      {"set default_transaction_read_only to default", true},
      {"reset default_transaction_read_only", true},
      {"set transaction_read_only = off", true},
      {"set session characteristics as transaction read write", true},
      {"begin read write", true},
      {"start transaction isolation level serializable, read write", true},
      {"set transaction read write", true},
      {"select set_config('default_transaction_read_only', 'off', false)", true},
      {"select set_config('transaction_read_only', 'off', true)", true},
      {"select set_config(name, 'off', false) from pg_settings", true},
      {"alter role bob set default_transaction_read_only = off", true},
      {"set default_transaction_read_only = on", false},
      {"set transaction_read_only = true", false},
      {"begin read only, read write", true},
      {"set session characteristics as transaction read only, read write", true},
      {"set session characteristics as transaction read only", false},
      {"begin read only", false},
      {"begin", false},
      {"start transaction isolation level repeatable read", false},
      {"set transaction read only", false},
      {"set transaction isolation level serializable", false},
      {"select 1", false},
      {"reset all", false},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  CHECK(s->parsed);
  CHECK(s->changes_read_only == changes);
}

TEST_CASE("literals are normalized to positional parameters", "[analyzer]") {
  auto [sql, normalized] = GENERATE(table<std::string, std::string>({
      {"select 1 where a='x'", "select $1 where a=$2"},
      {"SELECT * FROM t WHERE id = 42 AND name = 'bob'", "SELECT * FROM t WHERE id = $1 AND name = $2"},
      {"insert into t values (1, 'secret')", "insert into t values ($1, $2)"},
      {"select * from t where id = $1", "select * from t where id = $1"},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  CHECK(One(analyzer, sql)->normalized == normalized);
}

TEST_CASE("fingerprints ignore literal values and whitespace but not structure", "[analyzer]") {
  SqlAnalyzer analyzer;
  auto a = One(analyzer, "select * from t where id = 1");
  auto b = One(analyzer, "SELECT *   FROM t WHERE id = 99");
  auto c = One(analyzer, "select * from u where id = 1");
  REQUIRE_FALSE(a->fingerprint.empty());
  CHECK(a->fingerprint.size() == 16);
  CHECK(a->fingerprint == b->fingerprint);
  CHECK(a->fingerprint != c->fingerprint);
}

TEST_CASE("multi-statement strings split on real statement boundaries only", "[analyzer]") {
  SqlAnalyzer analyzer;
  SECTION("three plain statements") {
    auto s = analyzer.AnalyzeQuery("select 1; insert into t values (2);  begin  ");
    REQUIRE(s.size() == 3);
    CHECK(s[0]->text == "select 1");
    CHECK(s[1]->text == "insert into t values (2)");
    CHECK(s[2]->text == "begin");
    CHECK(s[0]->statement_class == StatementClass::kRead);
    CHECK(s[1]->statement_class == StatementClass::kWrite);
    CHECK(s[2]->statement_class == StatementClass::kTransaction);
  }
  SECTION("semicolons inside string literals, identifiers, comments and dollar quotes") {
    auto s = analyzer.AnalyzeQuery(
        "select ';' as \"a;b\"; /* x; y */ select 2 -- trailing; comment\n; do $$ begin perform 1; end $$");
    REQUIRE(s.size() == 3);
    CHECK(s[0]->text == "select ';' as \"a;b\"");
    CHECK(s[1]->text == "/* x; y */ select 2 -- trailing; comment");
    CHECK(s[2]->statement_class == StatementClass::kProcedure);
  }
  SECTION("empty statements between semicolons are dropped") {
    auto s = analyzer.AnalyzeQuery("select 1;;; select 2;");
    REQUIRE(s.size() == 2);
    CHECK(s[1]->text == "select 2");
  }
  SECTION("a tamper hidden after a harmless statement is flagged on that statement") {
    auto s = analyzer.AnalyzeQuery("select 1; set application_name = 'x'");
    REQUIRE(s.size() == 2);
    CHECK_FALSE(s[0]->tampers_identity);
    CHECK(s[1]->tampers_identity);
  }
}

TEST_CASE("empty, whitespace and comment-only queries give no statements", "[analyzer]") {
  SqlAnalyzer analyzer;
  auto sql = GENERATE(std::string(""), std::string("   \n\t"), std::string(";"), std::string(" ; ; "),
                      std::string("-- just a comment"), std::string("/* block */"));
  CAPTURE(sql);
  CHECK(analyzer.AnalyzeQuery(sql).empty());
}

TEST_CASE("unparseable input is one unparsed statement of unknown class", "[analyzer]") {
  SqlAnalyzer analyzer;
  auto sql = GENERATE(std::string("selec 1"), std::string("select 1; selec 2"), std::string("select 'unterminated"),
                      std::string("  drop tabel t  "));
  CAPTURE(sql);
  auto s = analyzer.AnalyzeQuery(sql);
  REQUIRE(s.size() == 1);
  CHECK_FALSE(s[0]->parsed);
  CHECK(s[0]->statement_class == StatementClass::kUnknown);
  CHECK(s[0]->normalized.empty());
  CHECK(s[0]->fingerprint.empty());
  CHECK(s[0]->text == std::string(sql.find_first_not_of(' ') == 0 ? sql : "drop tabel t"));
}

TEST_CASE("an embedded NUL is never treated as parsed", "[analyzer]") {
  SqlAnalyzer analyzer;
  std::string sql("select 1\0; drop table t", 23);
  auto s = analyzer.AnalyzeQuery(sql);
  REQUIRE(s.size() == 1);
  CHECK_FALSE(s[0]->parsed);
}

TEST_CASE("Parse analyzes the whole text as one statement", "[analyzer]") {
  SqlAnalyzer analyzer;
  SECTION("single statement with parameters") {
    auto s = analyzer.AnalyzeParse("update t set a = $1 where id = $2");
    CHECK(s->parsed);
    CHECK(s->statement_class == StatementClass::kWrite);
    CHECK(s->normalized == "update t set a = $1 where id = $2");
  }
  SECTION("empty text is a harmless read") {
    auto s = analyzer.AnalyzeParse("");
    CHECK(s->parsed);
    CHECK(s->statement_class == StatementClass::kRead);
  }
  SECTION("several statements are unknown with the worst flags") {
    auto s = analyzer.AnalyzeParse("select 1; set pgward.principal = 'x'");
    CHECK(s->statement_class == StatementClass::kUnknown);
    CHECK(s->tampers_identity);
  }
  SECTION("unparseable") {
    auto s = analyzer.AnalyzeParse("selec 1");
    CHECK_FALSE(s->parsed);
    CHECK(s->statement_class == StatementClass::kUnknown);
  }
}

TEST_CASE("DEALLOCATE names the prepared statement it removes", "[analyzer]") {
  SqlAnalyzer analyzer;
  CHECK(One(analyzer, "deallocate s1")->deallocate_name == "s1");
  CHECK(One(analyzer, "deallocate prepare s2")->deallocate_name == "s2");
  CHECK(One(analyzer, "deallocate all")->deallocate_name.empty());
}

TEST_CASE("repeated SQL is served from the cache and the cache stays bounded", "[analyzer]") {
  // Texts without constants: those with constants share one entry per shape (statement_shape_test).
  SqlAnalyzer analyzer(2);
  auto first = analyzer.AnalyzeQuery("select a from t");
  auto again = analyzer.AnalyzeQuery("select a from t");
  REQUIRE(first.size() == 1);
  CHECK(first[0].get() == again[0].get());  // same analysis object: no re-parse
  analyzer.AnalyzeQuery("select b from t");
  analyzer.AnalyzeQuery("select c from t");  // evicts "select a from t" (least recently used)
  auto evicted = analyzer.AnalyzeQuery("select a from t");
  CHECK(evicted[0].get() != first[0].get());
  CHECK(evicted[0]->normalized == first[0]->normalized);
  CHECK(analyzer.AnalyzeParse("select 1").get() == analyzer.AnalyzeParse("select 1").get());
}

TEST_CASE("the analyzer can be shared between threads", "[analyzer]") {
  SqlAnalyzer analyzer(8);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto s = analyzer.AnalyzeQuery("select " + std::to_string(i % 16) + "; delete from t");
        if (s.size() == 2 && s[1]->statement_class == StatementClass::kWrite) ++ok[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) CHECK(ok[t] == 200);
}

}  // namespace
}  // namespace pgward::inspect
