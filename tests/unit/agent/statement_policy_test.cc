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
  }));
  CAPTURE(sql);
  CHECK(Allowed(policy, sql) == allowed);
}

TEST_CASE("identity settings cannot be changed under any mode", "[policy]") {
  auto mode = GENERATE(pgward::v1::MODE_READ_ONLY, pgward::v1::MODE_READ_WRITE, pgward::v1::MODE_STATEMENT_CLASSES);
  auto policy = PolicyOf(mode, {"read", "write", "session"});
  auto sql = GENERATE(as<std::string>{}, "SET application_name = 'me'", "SET pgward.principal = 'root'",
                      "RESET pgward.session_id", "SELECT set_config('pgward.principal', 'x', false)");
  CAPTURE(mode, sql);
  auto decision = [&] {
    pgward::inspect::SqlAnalyzer analyzer;
    return CheckStatement(policy, *analyzer.AnalyzeQuery(sql)[0]);
  }();
  CHECK_FALSE(decision.allowed);
  CHECK_THAT(decision.reason, Catch::Contains("pgward"));
}

TEST_CASE("read-write grants allow everything else, even text that does not parse", "[policy]") {
  auto policy = PolicyOf(pgward::v1::MODE_READ_WRITE);
  CHECK(Allowed(policy, "DROP TABLE t"));
  CHECK(Allowed(policy, "INSERT INTO t VALUES (1)"));
  CHECK(Allowed(policy, "SELEC 1"));  // Postgres itself reports the syntax error
}

TEST_CASE("statement-class grants allow the listed classes plus transaction and session control", "[policy]") {
  auto policy = PolicyOf(pgward::v1::MODE_STATEMENT_CLASSES, {"read", "copy_in"});
  CHECK(Allowed(policy, "SELECT 1"));
  CHECK(Allowed(policy, "COPY t FROM STDIN"));
  CHECK(Allowed(policy, "BEGIN"));
  CHECK(Allowed(policy, "SET work_mem = '64MB'"));
  CHECK_FALSE(Allowed(policy, "INSERT INTO t VALUES (1)"));
  CHECK_FALSE(Allowed(policy, "SELEC 1"));
}

TEST_CASE("a grant without a mode refuses everything", "[policy]") {
  CHECK_FALSE(Allowed(PolicyOf(pgward::v1::MODE_UNSPECIFIED), "SELECT 1"));
}
