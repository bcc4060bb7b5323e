// The per-statement policy decision the agent applies before a statement reaches Postgres.
#include <catch2/catch.hpp>

#include "agent/inspect/sql_analyzer.h"
#include "agent/session/statement_policy.h"

using pgward::agent::CheckStatement;

namespace {

pgward::v1::Policy PolicyOf(pgward::v1::Mode mode, std::vector<std::string> classes = {}) {
  pgward::v1::Policy policy;
  policy.set_mode(mode);
  for (auto& c : classes) policy.add_statement_classes(c);
  return policy;
}

bool Allowed(const pgward::v1::Policy& policy, const std::string& sql) {
  static pgward::inspect::SqlAnalyzer analyzer;
  auto statements = analyzer.AnalyzeQuery(sql);
  REQUIRE(statements.size() == 1);
  return CheckStatement(policy, *statements[0]).allowed;
}

}  // namespace

TEST_CASE("read-only grants allow reads and refuse writes", "[policy]") {
  auto policy = PolicyOf(pgward::v1::MODE_READ_ONLY);
  auto [sql, allowed] = GENERATE(table<std::string, bool>({
      {"SELECT 1", true},
      {"SELECT * FROM t WHERE id = 3", true},
      {"BEGIN", true},
      {"COMMIT", true},
      {"SET search_path = public", true},
      {"COPY t TO STDOUT", true},
      {"EXPLAIN SELECT 1", true},
      {"INSERT INTO t VALUES (1)", false},
      {"UPDATE t SET a = 1", false},
      {"DELETE FROM t", false},
      {"CREATE TABLE x (a int)", false},
      {"COPY t FROM STDIN", false},
      {"SELECT * FROM t FOR UPDATE", false},
      {"SET default_transaction_read_only = off", false},
      {"BEGIN READ WRITE", false},
      {"GRANT SELECT ON t TO public", false},
      {"SELEC 1", false},
      {"DO $$ BEGIN PERFORM 1; END $$", false},
      {"PREPARE p AS DELETE FROM t", false},
      {"UNLISTEN *", true},
  }));
  CAPTURE(sql);
  CHECK(Allowed(policy, sql) == allowed);
}

TEST_CASE("identity settings cannot be changed under any mode", "[policy]") {
  auto mode = GENERATE(pgward::v1::MODE_READ_ONLY, pgward::v1::MODE_READ_WRITE, pgward::v1::MODE_STATEMENT_CLASSES);
  auto policy = PolicyOf(mode, {"read", "write", "session"});
  auto sql = GENERATE(as<std::string>{}, "SET application_name = 'me'", "SET pgward.principal = 'root'",
                      "RESET pgward.session_id", "SELECT set_config('pgward.principal', 'x', false)",
                      "SET ROLE postgres", "SET SESSION AUTHORIZATION app");
  CAPTURE(mode, sql);
  auto decision = [&] {
    pgward::inspect::SqlAnalyzer analyzer;
    return CheckStatement(policy, *analyzer.AnalyzeQuery(sql)[0]);
  }();
  CHECK_FALSE(decision.allowed);
  CHECK(decision.sqlstate == "42501");
  CHECK_THAT(decision.reason, Catch::Contains("pgward"));
}

TEST_CASE("read-write grants allow every class but caller-supplied code", "[policy]") {
  auto policy = PolicyOf(pgward::v1::MODE_READ_WRITE);
  auto [sql, allowed] = GENERATE(table<std::string, bool>({
      {"DROP TABLE t", true},
      {"INSERT INTO t VALUES (1)", true},
      {"GRANT SELECT ON t TO bob", true},
      {"VACUUM t", true},
      {"SELECT pg_advisory_lock(1)", true},
      {"LISTEN c", true},
      {"SELECT pg_terminate_backend(1)", true},
      {"EXECUTE p", true},
      {"COPY t FROM STDIN", true},
      {"DO $$ BEGIN PERFORM 1; END $$", false},
      {"CALL p()", false},
      {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", false},
      {"CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", false},
      {"CREATE RULE r AS ON INSERT TO t DO ALSO NOTIFY c", false},
      {"COPY t TO PROGRAM 'cat'", false},
      {"SELECT pg_read_file('/etc/passwd')", false},
      {"SELECT query_to_xml('select 1', true, true, '')", false},
  }));
  CAPTURE(sql);
  CHECK(Allowed(policy, sql) == allowed);
}

TEST_CASE("what is refused in every mode, with its SQLSTATE", "[policy]") {
  auto mode = GENERATE(pgward::v1::MODE_READ_ONLY, pgward::v1::MODE_READ_WRITE, pgward::v1::MODE_STATEMENT_CLASSES);
  auto policy = PolicyOf(mode, {"read", "write", "ddl", "procedure", "privilege", "maintenance"});
  auto [sql, sqlstate] = GENERATE(table<std::string, std::string>({
      {"SELEC 1", "42601"},
      {"SET standard_conforming_strings = off", "42501"},
      {"SET NAMES 'SJIS'", "42501"},
      {"SELECT set_config('backslash_quote', 'on', false)", "42501"},
      {"SET ROLE postgres", "42501"},
      {"RESET SESSION AUTHORIZATION", "42501"},
      {"SELECT query FROM pg_stat_activity", "42501"},
      {"SELECT * FROM pg_locks", "42501"},
      {"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'select 1'", "42501"},
  }));
  CAPTURE(mode, sql);
  pgward::inspect::SqlAnalyzer analyzer;
  auto decision = CheckStatement(policy, *analyzer.AnalyzeQuery(sql)[0]);
  CHECK_FALSE(decision.allowed);
  CHECK(decision.sqlstate == sqlstate);
}

TEST_CASE("statements over the analyzer's limits are refused with program-limit SQLSTATEs", "[policy]") {
  pgward::inspect::AnalyzerLimits limits;
  limits.max_statement_bytes = 64;
  limits.max_tree_depth = 50;
  pgward::inspect::SqlAnalyzer analyzer(16, limits);
  auto policy = PolicyOf(pgward::v1::MODE_READ_WRITE);
  auto large = CheckStatement(policy, *analyzer.AnalyzeQuery("SELECT 1" + std::string(100, ' ') + ", 2")[0]);
  CHECK_FALSE(large.allowed);
  CHECK(large.sqlstate == "54000");
  CHECK_THAT(large.reason, Catch::Contains("too large"));
  std::string deep = "SELECT 1";
  for (int i = 0; i < 20; ++i) deep += "+1";
  auto complex = CheckStatement(policy, *analyzer.AnalyzeQuery(deep)[0]);
  CHECK_FALSE(complex.allowed);
  CHECK(complex.sqlstate == "54001");
}

TEST_CASE("read-only refuses signalling, locking, notifying and sequence writes", "[policy]") {
  auto policy = PolicyOf(pgward::v1::MODE_READ_ONLY);
  auto [sql, allowed] = GENERATE(table<std::string, bool>({
      {"SELECT pg_terminate_backend(42)", false},
      {"SELECT pg_cancel_backend(42)", false},
      {"SELECT pg_reload_conf()", false},
      {"SELECT pg_advisory_lock(1)", false},
      {"SELECT pg_catalog.pg_try_advisory_xact_lock(1)", false},
      {"LISTEN c", false},
      {"NOTIFY c", false},
      {"SELECT pg_notify('c', 'x')", false},
      {"SELECT nextval('s')", false},
      {"SELECT setval('s', 1)", false},
      {"SELECT lo_unlink(1)", false},
      {"SELECT pg_ls_dir('.')", false},
      {"UNLISTEN *", true},
      {"SELECT currval('s')", true},
      {"SELECT lo_get(1)", true},
      {"SELECT pg_backend_pid()", true},
  }));
  CAPTURE(sql);
  CHECK(Allowed(policy, sql) == allowed);
}

TEST_CASE("a refusal names the class its part needs", "[policy]") {
  pgward::inspect::SqlAnalyzer analyzer;
  auto decision = CheckStatement(PolicyOf(pgward::v1::MODE_READ_ONLY), *analyzer.AnalyzeQuery("SELECT nextval('s')")[0]);
  CHECK(decision.reason == "write statements are not allowed: this grant is read-only (it calls nextval())");
  auto code = CheckStatement(PolicyOf(pgward::v1::MODE_READ_WRITE), *analyzer.AnalyzeQuery("CALL p()")[0]);
  CHECK_THAT(code.reason, Catch::StartsWith("procedure statements (caller-supplied code) are not allowed"));
}

TEST_CASE("code needs the procedure class, also spelled code", "[policy]") {
  for (const char* name : {"procedure", "code"}) {
    auto policy = PolicyOf(pgward::v1::MODE_STATEMENT_CLASSES, {"read", name});
    CAPTURE(name);
    CHECK(Allowed(policy, "DO $$ BEGIN PERFORM 1; END $$"));
    CHECK(Allowed(policy, "SELECT pg_read_file('x')"));
    CHECK_FALSE(Allowed(policy, "SELECT nextval('s')"));
    CHECK(pgward::agent::AllowsClass(policy, pgward::inspect::StatementClass::kProcedure));
  }
  CHECK_FALSE(pgward::agent::AllowsClass(PolicyOf(pgward::v1::MODE_READ_WRITE), pgward::inspect::StatementClass::kProcedure));
}

TEST_CASE("the refusal is an ERROR with the decision's SQLSTATE and the pgward prefix", "[policy]") {
  pgward::agent::PolicyDecision decision{false, "42501", "write statements are not allowed"};
  const std::string error = pgward::agent::BuildRefusal(decision, "bot", "shop");
  CHECK(error[0] == 'E');
  CHECK(error.find(std::string("C42501\0", 7)) != std::string::npos);
  CHECK(error.find("Mpgward: statement refused: write statements are not allowed") != std::string::npos);
  CHECK(error.find("principal \"bot\" on connection \"shop\"") != std::string::npos);
}

TEST_CASE("the owned application_name is quoted for the pinned standard_conforming_strings", "[policy]") {
  CHECK(pgward::agent::OwnedApplicationNameSet("o'brien\\x") == "SET application_name = 'pgward:o''brien\\x'");
}

TEST_CASE("statement-class grants allow the listed classes plus transaction and session control", "[policy]") {
  auto policy = PolicyOf(pgward::v1::MODE_STATEMENT_CLASSES, {"read", "copy_in"});
  CHECK(Allowed(policy, "SELECT 1"));
  CHECK(Allowed(policy, "COPY t FROM STDIN"));
  CHECK(Allowed(policy, "BEGIN"));
  CHECK(Allowed(policy, "SET work_mem = '64MB'"));
  CHECK_FALSE(Allowed(policy, "INSERT INTO t VALUES (1)"));
  CHECK_FALSE(Allowed(policy, "SELEC 1"));
  CHECK_FALSE(Allowed(policy, "EXECUTE p"));  // unknown is never listed
  CHECK_FALSE(Allowed(policy, "SELECT pg_terminate_backend(1)"));
}

TEST_CASE("a grant without a mode refuses everything", "[policy]") {
  CHECK_FALSE(Allowed(PolicyOf(pgward::v1::MODE_UNSPECIFIED), "SELECT 1"));
}
