// Tests for what SqlAnalyzer finds below a statement's top node: the classes its parts need
// (function calls, nested statements), identity and lexing-setting changes by every route,
// monitoring views, the application_name shape drivers send, size and depth limits, and the
// literals libpg_query's normalizer leaves behind. All through the real libpg_query parser.
#include <string>

#include <catch2/catch.hpp>

#include "agent/inspect/catalog_rules.h"
#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {
namespace {

AnalyzedStatementPtr One(SqlAnalyzer& analyzer, const std::string& sql) {
  auto statements = analyzer.AnalyzeQuery(sql);
  REQUIRE(statements.size() == 1);
  return statements.front();
}

ClassSet Bits(std::initializer_list<StatementClass> classes) {
  ClassSet set = 0;
  for (StatementClass c : classes) set |= ClassBit(c);
  return set;
}

TEST_CASE("a statement requires the classes of what its parts do", "[analyzer][classes]") {
  using C = StatementClass;
  auto [sql, required] = GENERATE(table<std::string, ClassSet>({
      {"select 1", Bits({C::kRead})},
      {"select nextval('orders_id_seq')", Bits({C::kRead, C::kWrite})},
      {"select setval('s', 1)", Bits({C::kRead, C::kWrite})},
      {"select * from t where a = (select pg_advisory_lock(1))", Bits({C::kRead, C::kWrite})},
      {"select pg_catalog.PG_TRY_ADVISORY_LOCK(1)", Bits({C::kRead, C::kWrite})},  // folded by the parser
      {"select \"PG_ADVISORY_LOCK\"(1)", Bits({C::kRead, C::kWrite})},            // quoted: refused too (fail closed)
      {"select myschema.pg_notify('a', 'b')", Bits({C::kRead, C::kWrite})},
      {"select lo_create(0)", Bits({C::kRead, C::kWrite})},
      {"select lo_get(42)", Bits({C::kRead})},
      {"select currval('s')", Bits({C::kRead})},
      {"select pg_terminate_backend(123)", Bits({C::kRead, C::kMaintenance})},
      {"select pg_cancel_backend(pid) from generate_series(1, 10) pid", Bits({C::kRead, C::kMaintenance})},
      {"select pg_reload_conf()", Bits({C::kRead, C::kMaintenance})},
      {"select pg_stat_reset()", Bits({C::kRead, C::kMaintenance})},
      {"select pg_read_file('/etc/passwd')", Bits({C::kRead, C::kProcedure})},
      {"select * from pg_ls_dir('.') d", Bits({C::kRead, C::kProcedure})},
      {"select lo_import('/etc/passwd')", Bits({C::kRead, C::kProcedure})},
      {"select dblink_exec('conn', 'delete from t')", Bits({C::kRead, C::kProcedure})},
      {"select query_to_xml('select 1', true, true, '')", Bits({C::kRead, C::kProcedure})},
      {"select table_to_xml('pg_stat_activity', true, true, '')", Bits({C::kRead, C::kProcedure})},
      {"select ts_rewrite('a'::tsquery, 'select 1')", Bits({C::kRead, C::kProcedure})},
      {"select ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)", Bits({C::kRead})},
      {"with d as (delete from t returning *) select * from d", Bits({C::kWrite})},
      {"prepare p as delete from t", Bits({C::kSession, C::kWrite})},
      {"prepare p as select nextval('s')", Bits({C::kSession, C::kWrite})},
      {"copy (delete from t returning *) to stdout", Bits({C::kCopyOut, C::kWrite})},
      {"explain delete from t", Bits({C::kRead})},  // planned only
      {"explain analyze delete from t", Bits({C::kWrite})},
      {"explain select nextval('s')", Bits({C::kRead, C::kWrite})},  // function effects: fail closed
      {"create schema s create trigger tr before insert on t for each row execute function f()",
       Bits({C::kDdl, C::kProcedure})},
      {"create table t2 (id int default nextval('s'))", Bits({C::kDdl, C::kWrite})},
      {"create view v as select pg_read_file('x')", Bits({C::kDdl, C::kProcedure})},
      {"call p(pg_notify('a', 'b'))", Bits({C::kProcedure, C::kWrite})},
      {"do $$ begin perform 1; end $$", Bits({C::kProcedure})},
      {"notify c", Bits({C::kWrite})},
      {"unlisten c", Bits({C::kSession})},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  REQUIRE(s->parsed);
  CHECK(s->required_classes == required);
  CHECK((s->required_classes & ClassBit(s->statement_class)) != 0);
}

TEST_CASE("the note names the call that needs a class beyond the statement's own", "[analyzer][classes]") {
  SqlAnalyzer analyzer;
  CHECK(One(analyzer, "select nextval('s')")->class_note == "it calls nextval()");
  CHECK(One(analyzer, "select 1, pg_catalog.pg_terminate_backend(2)")->class_note == "it calls pg_terminate_backend()");
  CHECK(One(analyzer, "select 1")->class_note.empty());
  CHECK(One(analyzer, "insert into t select nextval('s')")->class_note.empty());  // write is its own class
}

TEST_CASE("role and session authorization changes tamper with identity", "[analyzer][identity]") {
  auto [sql, tampers] = GENERATE(table<std::string, bool>({
      {"set role postgres", true},
      {"set local role app", true},
      {"set role none", true},
      {"reset role", true},
      {"set session authorization postgres", true},
      {"set session authorization default", true},
      {"reset session authorization", true},
      {"select set_config('role', 'postgres', false)", true},
      {"select set_config('Session_Authorization', 'x', false)", true},
      {"alter role bob set role = 'postgres'", true},
      {"create function f() returns int language sql set role = 'x' as 'select 1'", true},
      {"alter function f() set pgward.principal = 'x'", true},
      {"create procedure p() set application_name = 'x' language sql as 'select 1'", true},
      {"create function f() returns text language sql begin atomic select set_config('pgward.principal', 'x', false); end",
       true},
      {"select set_config(name := 'pgward.principal', value := 'x', is_local := false)", true},  // not a constant
      {"select set_config('pgward.principal'::text, 'x', false)", true},
      {"with u as (update pg_settings set setting = 'x' where name = 'role' returning 1) select * from u", true},
      {"discard all", false},
      {"reset all", false},
      {"select current_user, session_user", false},
      {"show role", false},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  REQUIRE(s->parsed);
  CHECK(s->tampers_identity == tampers);
}

TEST_CASE("changing a setting the server lexes SQL with is flagged by every route", "[analyzer][lexing]") {
  auto [sql, changes] = GENERATE(table<std::string, bool>({
      {"set standard_conforming_strings = off", true},
      {"set standard_conforming_strings to false", true},
      {"set local standard_conforming_strings = off", true},
      {"set session standard_conforming_strings = 0", true},
      {"set \"Standard_Conforming_Strings\" = off", true},
      {"set standard_conforming_strings to default", true},
      {"reset standard_conforming_strings", true},
      {"set backslash_quote = on", true},
      {"set backslash_quote = yes", true},
      {"reset backslash_quote", true},
      {"set names 'SJIS'", true},
      {"set names", true},
      {"set client_encoding to 'BIG5'", true},
      {"set client_encoding = gbk", true},
      {"reset client_encoding", true},
      {"select set_config('standard_conforming_strings', 'off', false)", true},
      {"select pg_catalog.set_config('CLIENT_ENCODING', 'sjis', true)", true},
      {"select set_config('backslash_quote', current_setting('x'), false)", true},  // value not constant
      {"select set_config(n, 'off', false) from t", true},                          // name not constant
      {"update pg_settings set setting = 'off' where name = 'standard_conforming_strings'", true},
      {"update pg_catalog.PG_SETTINGS set setting = 'x'", true},
      {"alter role current_user set standard_conforming_strings = off", true},
      {"alter database d set client_encoding = 'SJIS'", true},
      {"alter system set backslash_quote = on", true},
      {"create function f() returns int language sql set standard_conforming_strings = off as 'select 1'", true},
      {"alter function f() set client_encoding = 'BIG5'", true},
      {"alter procedure p() reset standard_conforming_strings", true},
      // The values pgward pins (pg_dump scripts and libpq's PQsetClientEncoding send these).
      {"set standard_conforming_strings = on", false},
      {"set standard_conforming_strings to true", false},
      {"set client_encoding = 'UTF8'", false},
      {"set names 'unicode'", false},
      {"set client_encoding to 'utf-8'", false},
      {"set backslash_quote = safe_encoding", false},
      {"set backslash_quote = off", false},
      {"select pg_catalog.set_config('standard_conforming_strings', 'on', false)", false},
      {"set escape_string_warning = off", false},  // warnings only: the lexer reads the same tokens
      {"alter function f() reset all", false},
      {"reset all", false},
      {"show standard_conforming_strings", false},
      {"select current_setting('client_encoding')", false},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  REQUIRE(s->parsed);
  CHECK(s->changes_lexing == changes);
}

TEST_CASE("views and functions that show other sessions are found anywhere", "[analyzer][monitoring]") {
  auto [sql, found] = GENERATE(table<std::string, std::string>({
      {"select query from pg_stat_activity", "pg_stat_activity"},
      {"select * from pg_catalog.pg_stat_activity a join customers c on true", "pg_stat_activity"},
      {"select count(*) from pg_locks", "pg_locks"},
      {"select * from public.pg_stat_statements", "pg_stat_statements"},
      {"select * from pg_stat_progress_vacuum", "pg_stat_progress_vacuum"},
      {"select * from pg_stat_ssl", "pg_stat_ssl"},
      {"with a as (select * from pg_stat_activity) select 1 from a", "pg_stat_activity"},
      {"select (select query from pg_stat_activity limit 1)", "pg_stat_activity"},
      {"explain analyze select * from pg_stat_activity", "pg_stat_activity"},
      {"prepare p as select * from pg_stat_activity", "pg_stat_activity"},
      {"copy (select * from pg_locks) to stdout", "pg_locks"},
      {"create view v as select * from pg_stat_activity", "pg_stat_activity"},
      {"select pg_stat_get_activity(null)", "pg_stat_get_activity()"},
      {"select pg_stat_get_backend_activity(3)", "pg_stat_get_backend_activity()"},
      {"select pg_blocking_pids(1)", "pg_blocking_pids()"},
      {"select * from pg_lock_status()", "pg_lock_status()"},
      {"select * from pg_stat_database", ""},
      {"select * from pg_stat_user_tables", ""},
      {"select pg_backend_pid()", ""},
      {"select * from customers", ""},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto statements = analyzer.AnalyzeQuery(sql);
  REQUIRE(statements.size() == 1);
  REQUIRE(statements[0]->parsed);
  CHECK(statements[0]->monitoring == found);
}

TEST_CASE("the application_name shape drivers send is recognized from the parse tree", "[analyzer]") {
  auto [sql, plain] = GENERATE(table<std::string, bool>({
      {"SET application_name = 'PostgreSQL JDBC Driver'", true},
      {"set session application_name to 'evil'", true},
      {"SET APPLICATION_NAME = 'x';", true},
      {"set application_name = 5", true},
      {"SET" + std::string(200'000, ' ') + "application_name = 'x'", true},  // no backtracking regex
      {"set local application_name = 'x'", false},
      {"reset application_name", false},
      {"set application_name to default", false},
      {"set pgward.principal = 'x'", false},
      {"select set_config('application_name', 'x', false)", false},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql.substr(0, 60));
  auto statements = analyzer.AnalyzeQuery(sql);
  REQUIRE(statements.size() == 1);
  CHECK(statements[0]->plain_application_name_set == plain);
  CHECK(analyzer.AnalyzeParse(sql)->plain_application_name_set == plain);
}

TEST_CASE("RESET ALL and DISCARD ALL are recognized as resetting the session", "[analyzer]") {
  auto [sql, resets] = GENERATE(table<std::string, bool>({
      {"RESET ALL", true},
      {"reset all;", true},
      {"DISCARD ALL", true},
      {"discard all", true},
      {"DISCARD PLANS", false},
      {"DISCARD TEMP", false},
      {"RESET work_mem", false},
      {"SET work_mem TO DEFAULT", false},
      {"ALTER ROLE app RESET ALL", false},
      {"SELECT 1", false},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto statements = analyzer.AnalyzeQuery(sql);
  REQUIRE(statements.size() == 1);
  CHECK(statements[0]->resets_session == resets);
  CHECK(analyzer.AnalyzeParse(sql)->resets_session == resets);
}

TEST_CASE("texts over the size limit are not parsed", "[analyzer][limits]") {
  AnalyzerLimits limits;
  limits.max_statement_bytes = 100;
  SqlAnalyzer analyzer(16, limits);
  const std::string fits = "select 1" + std::string(92, ' ');
  const std::string over = "select 1" + std::string(93, ' ');
  CHECK(One(analyzer, fits)->parsed);
  auto s = One(analyzer, over);
  CHECK_FALSE(s->parsed);
  CHECK(s->limit == AnalysisLimit::kTooLarge);
  CHECK(s->text == "select 1");
  CHECK(analyzer.AnalyzeParse(over)->limit == AnalysisLimit::kTooLarge);
}

TEST_CASE("parse trees over the size limit are not walked", "[analyzer][limits]") {
  AnalyzerLimits limits;
  limits.max_tree_bytes = 2000;
  SqlAnalyzer analyzer(16, limits);
  std::string many = "select a";
  for (int i = 0; i < 100; ++i) many += ",a";
  CHECK(One(analyzer, many)->limit == AnalysisLimit::kTooLarge);
  CHECK(One(analyzer, "select a, a")->parsed);
}

TEST_CASE("deep nesting fails closed instead of exhausting the stack", "[analyzer][limits]") {
  SqlAnalyzer analyzer;
  std::string plus = "select 1";
  for (int i = 0; i < 300'000; ++i) plus += "+1";
  std::string casts = "select 1";
  for (int i = 0; i < 100'000; ++i) casts += "::int";
  std::string unions = "select 1";
  for (int i = 0; i < 30'000; ++i) unions += " union select 1";
  for (const std::string& deep : {plus, casts, unions}) {
    auto s = One(analyzer, deep);
    CHECK_FALSE(s->parsed);
    CHECK(s->limit == AnalysisLimit::kTooComplex);
    CHECK(analyzer.AnalyzeParse(deep)->limit == AnalysisLimit::kTooComplex);
  }
  // The Postgres grammar's own stack gives up on deep parentheses, as the server's does.
  const std::string parens = "select " + std::string(100'000, '(') + "1" + std::string(100'000, ')');
  auto p = One(analyzer, parens);
  CHECK_FALSE(p->parsed);
  CHECK(p->limit == AnalysisLimit::kNone);
  CHECK_THAT(p->parse_error, Catch::Contains("memory exhausted"));
}

TEST_CASE("moderate nesting is analyzed, on a large stack when the text is long", "[analyzer][limits]") {
  SqlAnalyzer analyzer;
  std::string chain = "select 0";
  for (int i = 0; i < 3000; ++i) chain += "+1";  // over the 4 KiB inline limit
  auto s = One(analyzer, chain);
  REQUIRE(s->parsed);
  CHECK(s->statement_class == StatementClass::kRead);
  CHECK(s->normalized.substr(0, 12) == "select $1+$2");
  std::string nested = "select " + std::string(1000, '(') + "nextval('s')" + std::string(1000, ')');
  CHECK(One(analyzer, nested)->required_classes == (ClassBit(StatementClass::kRead) | ClassBit(StatementClass::kWrite)));
}

TEST_CASE("unparsable text keeps the parser's message", "[analyzer]") {
  SqlAnalyzer analyzer;
  auto s = One(analyzer, "SELEC 1");
  CHECK_FALSE(s->parsed);
  CHECK(s->parse_error == "syntax error at or near \"SELEC\"");
}

TEST_CASE("literals the normalizer leaves in utility statements become parameters", "[analyzer][literals]") {
  auto [sql, normalized] = GENERATE(table<std::string, std::string>({
      {"notify chan, 'ssn-123'", "notify chan, $1"},
      {"prepare p as select 'ssn-1', $1", "prepare p as select $2, $1"},
      {"comment on table t is 'secret'", "comment on table t is $1"},
      {"create table t (a text default 'ssn-7')", "create table t (a text default $1)"},
      {"create view v as select E'ssn\\\\x' as x", "create view v as select $1 as x"},
      {"create table t (a text default $q$ssn-8$q$)", "create table t (a text default $1)"},
      {"create server s foreign data wrapper f options (host 'h', password 'pw5')",
       "create server s foreign data wrapper f options (host $1, password $2)"},
      {"alter database d set search_path = 'secret'", "alter database d set search_path = $1"},
      {"create policy p on t using (a = 'ssn-12')", "create policy p on t using (a = $1)"},
      {"select 1 where a = 'x'", "select $1 where a = $2"},  // pg_query_normalize did these already
      {"select $$ssn-10$$", "select $1"},
      {"select B'101', X'ff'", "select $1, $2"},
  }));
  SqlAnalyzer analyzer;
  CAPTURE(sql);
  auto s = One(analyzer, sql);
  REQUIRE(s->parsed);
  CHECK(s->normalized == normalized);
}

TEST_CASE("Parse of several statements keeps every part's classes and flags", "[analyzer]") {
  SqlAnalyzer analyzer;
  auto s = analyzer.AnalyzeParse("select nextval('s'); select * from pg_locks; set standard_conforming_strings = off");
  CHECK(s->statement_class == StatementClass::kUnknown);
  CHECK((s->required_classes & ClassBit(StatementClass::kWrite)) != 0);
  CHECK((s->required_classes & ClassBit(StatementClass::kUnknown)) != 0);
  CHECK(s->monitoring == "pg_locks");
  CHECK(s->changes_lexing);
  CHECK(s->fingerprint.empty());
}

TEST_CASE("Postgres boolean spellings", "[catalog]") {
  auto [word, value] = GENERATE(table<std::string, int>({
      {"on", 1}, {"ON", 1}, {"true", 1}, {"t", 1}, {"tr", 1}, {"yes", 1}, {"y", 1}, {"1", 1},
      {"off", 0}, {"of", 0}, {"false", 0}, {"f", 0}, {"no", 0}, {"n", 0}, {"0", 0},
      {"o", -1}, {"", -1}, {"truex", -1}, {"2", -1}, {"onn", -1}, {"safe_encoding", -1},
  }));
  CAPTURE(word);
  auto parsed = ParseBool(word);
  CHECK((parsed.has_value() ? int(*parsed) : -1) == value);
}

}  // namespace
}  // namespace pgward::inspect
