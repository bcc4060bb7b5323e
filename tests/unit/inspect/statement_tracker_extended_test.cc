// Tests for StatementTracker, extended query protocol: unnamed and named statements, pipelining,
// skip-to-Sync after errors, injected refusals, suspended portals, desync detection, bounds.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "agent/inspect/statement_tracker.h"
#include "tests/unit/inspect/tracker_fixture.h"

namespace pgward::inspect {
namespace {

TEST_CASE("extended protocol with the unnamed statement and portal", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("select * from t where id = $1"));
  f.tracker.OnBind("", "");
  f.tracker.OnDescribe('P', "");
  f.tracker.OnExecute("", 0);
  f.tracker.OnSync();
  CHECK(f.tracker.PendingOperations() == 5);
  f.now += 10;
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnRowDescription().ok());
  f.now += 90;
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq();
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].extended);
  CHECK(r[0].statement->text == "select * from t where id = $1");
  CHECK(r[0].time_unix_us == 1'000'000);
  CHECK(r[0].duration_us == 90);  // from BindComplete's completion: the server works in order
  CHECK(r[0].rows == 1);
}

TEST_CASE("named statements are reused across Syncs until closed", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("s1", f.Parse("insert into t values ($1)"));
  f.tracker.OnDescribe('S', "s1");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnParameterDescription().ok());
  REQUIRE(f.tracker.OnNoData().ok());
  f.Rfq();
  for (int i = 0; i < 3; ++i) {
    f.tracker.OnBind("", "s1");
    f.tracker.OnExecute("");
    f.tracker.OnSync();
    REQUIRE(f.tracker.OnBindComplete().ok());
    REQUIRE(f.tracker.OnCommandComplete("INSERT 0 1").ok());
    f.Rfq();
  }
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 3);
  for (const auto& rec : r) CHECK(rec.statement->text == "insert into t values ($1)");

  SECTION("Close forgets it") {
    f.tracker.OnClose('S', "s1");
    f.tracker.OnSync();
    REQUIRE(f.tracker.OnCloseComplete().ok());
    f.Rfq();
  }
  SECTION("SQL DEALLOCATE forgets it") {
    f.tracker.OnQuery(f.Query("deallocate s1"));
    REQUIRE(f.tracker.OnCommandComplete("DEALLOCATE").ok());
    f.Rfq();
  }
  SECTION("DISCARD ALL forgets it") {
    f.tracker.OnQuery(f.Query("discard all"));
    REQUIRE(f.tracker.OnCommandComplete("DISCARD ALL").ok());
    f.Rfq();
  }
  f.tracker.TakeRecords();
  f.tracker.OnBind("", "s1");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnErrorResponse("26000", "prepared statement \"s1\" does not exist").ok());
  f.Rfq();
  r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  REQUIRE(r[0].statement != nullptr);
  CHECK_FALSE(r[0].statement->parsed);
  CHECK(r[0].statement->text.find("s1") != std::string::npos);
  CHECK(r[0].sqlstate == "26000");
}

TEST_CASE("pipelined batches with two Syncs in flight", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("insert into t values ($1)"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  f.tracker.OnParse("", f.Parse("select count(*) from t"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  f.now += 100;  // both batches were sent at the same time
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  f.now += 20;
  REQUIRE(f.tracker.OnCommandComplete("INSERT 0 1").ok());
  f.Rfq('I');
  f.now += 5;
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  f.now += 50;
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 2);
  CHECK(r[0].statement->statement_class == StatementClass::kWrite);
  CHECK(r[0].duration_us == 20);
  CHECK(r[1].statement->statement_class == StatementClass::kRead);
  CHECK(r[1].duration_us == 50);  // not the time it waited behind the first batch
  CHECK(f.tracker.PendingOperations() == 0);
}

TEST_CASE("an error in a pipeline skips everything up to the next Sync", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("insert into t values (1)"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnParse("", f.Parse("select 2"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  f.tracker.OnParse("", f.Parse("select 3"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnErrorResponse("23505", "duplicate key").ok());
  CHECK(f.tracker.PendingOperations() == 5);  // the first Sync and the second batch
  f.Rfq('I');
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 2);
  CHECK(r[0].statement->text == "insert into t values (1)");
  CHECK(r[0].sqlstate == "23505");
  CHECK(r[1].statement->text == "select 3");
  CHECK(r[1].command_tag == "SELECT 1");
}

TEST_CASE("messages sent after an error but before the Sync are discarded", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("select 1/0"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnErrorResponse("22012", "division by zero").ok());
  f.tracker.OnParse("", f.Parse("select 2"));  // the server discards these
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnQuery(f.Query("select 3"));
  f.tracker.OnSync();
  CHECK(f.tracker.PendingOperations() == 1);
  f.Rfq('I');
  CHECK(f.tracker.TakeRecords().size() == 1);
}

TEST_CASE("a Parse error is recorded with the statement's text", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("s1", f.Parse("selec 1"));
  f.tracker.OnBind("", "s1");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  f.now += 15;
  REQUIRE(f.tracker.OnErrorResponse("42601", "syntax error at or near \"selec\"").ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].extended);
  CHECK(r[0].statement->text == "selec 1");
  CHECK(r[0].sqlstate == "42601");
  CHECK(r[0].duration_us == 15);
  // The failed Parse created nothing: binding s1 later uses a placeholder.
  f.tracker.OnBind("", "s1");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnErrorResponse("26000", "prepared statement \"s1\" does not exist").ok());
  f.Rfq('I');
  r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK_FALSE(r[0].statement->parsed);
}

TEST_CASE("a refused batch's injected error comes back at its own ReadyForQuery", "[tracker]") {
  Fixture f;
  // Batch 1 is allowed; batch 2 was refused by the relay and replaced by a bare Sync.
  f.tracker.OnParse("", f.Parse("select 1"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  f.tracker.OnSync("E...refused");
  f.tracker.OnQuery(f.Query("select 2"));
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.Rfq('I').empty());
  CHECK(f.Rfq('I') == "E...refused");
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.Rfq('I').empty());
  CHECK(f.tracker.TakeRecords().size() == 2);
}

TEST_CASE("an injected error is dropped when the server already failed that batch", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("select 1/0"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync("E...refused");
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnErrorResponse("22012", "division by zero").ok());
  CHECK(f.Rfq('I').empty());
}

TEST_CASE("the agent's failing statement keeps the refusal of its batch", "[tracker]") {
  // An allowed statement, then the agent's own failing Parse/Bind/Execute in place of a refused
  // Parse; the Sync carries the refusal. The server's answers may overtake the caller's Sync
  // (the relay forwards the failing statement before it reads the rest of the batch).
  const bool sync_first = GENERATE(true, false);
  Fixture f;
  f.tracker.OnParse("", f.Parse("insert into t values (1)"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  REQUIRE(f.tracker.OnAgentFailure());
  if (sync_first) f.tracker.OnSync("E...refused");
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("INSERT 0 1").ok());
  CHECK(f.tracker.AgentFailureAtHead());
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnErrorResponse("22012", "division by zero").ok());
  CHECK_FALSE(f.tracker.AgentFailureAtHead());
  if (!sync_first) f.tracker.OnSync("E...refused");
  CHECK(f.Rfq('E') == "E...refused");
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);  // the insert; the agent's statement is not the caller's
  CHECK(r[0].statement->text == "insert into t values (1)");
  // The next batch starts clean: a server error in it drops its own injected error as usual.
  f.tracker.OnParse("", f.Parse("select 1/0"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnErrorResponse("22012", "division by zero").ok());
  f.tracker.OnSync("E...second");
  CHECK(f.Rfq('I').empty());
}

TEST_CASE("backend messages the conversation does not expect are a desync", "[tracker]") {
  Fixture f;
  SECTION("BindComplete with nothing pending") {
    CHECK(f.tracker.OnBindComplete().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("BindComplete when a ParseComplete is due") {
    f.tracker.OnParse("", f.Parse("select 1"));
    f.tracker.OnBind("", "");
    CHECK(f.tracker.OnBindComplete().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("ReadyForQuery before the extended operations were answered") {
    f.tracker.OnParse("", f.Parse("select 1"));
    f.tracker.OnSync();
    CHECK(f.tracker.OnReadyForQuery('I').status().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("ReadyForQuery before a Query's statements completed") {
    f.tracker.OnQuery(f.Query("select 1; select 2"));
    REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
    CHECK(f.tracker.OnReadyForQuery('I').status().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("more CommandCompletes than statements") {
    f.tracker.OnQuery(f.Query("select 1"));
    REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
    CHECK(f.tracker.OnCommandComplete("SELECT 1").code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("RowDescription from Execute") {
    f.tracker.OnExecute("");
    CHECK(f.tracker.OnRowDescription().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("Describe of a statement answered without ParameterDescription") {
    f.tracker.OnDescribe('S', "s");
    CHECK(f.tracker.OnRowDescription().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("ReadyForQuery with nothing pending") {
    CHECK(f.tracker.OnReadyForQuery('I').status().code() == absl::StatusCode::kFailedPrecondition);
  }
  SECTION("an error with nothing pending is not a desync (asynchronous FATAL)") {
    CHECK(f.tracker.OnErrorResponse("57P01", "terminating connection").ok());
    CHECK(f.tracker.TakeRecords().empty());
  }
}

TEST_CASE("a portal fetched in chunks gives one record when it completes", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("select * from big"));
  f.tracker.OnBind("c1", "");
  f.tracker.OnExecute("c1", 100);
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  f.now += 10;
  REQUIRE(f.tracker.OnPortalSuspended().ok());
  f.Rfq('T');
  CHECK(f.tracker.TakeRecords().empty());
  f.tracker.OnExecute("c1", 100);
  f.tracker.OnSync();
  f.now += 10;
  REQUIRE(f.tracker.OnCommandComplete("SELECT 42").ok());
  f.Rfq('T');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].rows == 142);
  CHECK(r[0].duration_us == 20);
  CHECK(r[0].time_unix_us == 1'000'000);

  SECTION("a suspended portal ended by the transaction is still reported") {
    f.tracker.OnBind("c2", "");
    f.tracker.OnExecute("c2", 50);
    f.tracker.OnSync();
    REQUIRE(f.tracker.OnBindComplete().ok());
    REQUIRE(f.tracker.OnPortalSuspended().ok());
    f.Rfq('T');
    f.tracker.OnQuery(f.Query("commit"));
    REQUIRE(f.tracker.OnCommandComplete("COMMIT").ok());
    f.Rfq('I');
    r = f.tracker.TakeRecords();
    REQUIRE(r.size() == 2);
    CHECK(r[0].statement->text == "commit");
    CHECK(r[1].statement->text == "select * from big");
    CHECK(r[1].command_tag.empty());
    CHECK(r[1].sqlstate.empty());
    CHECK(r[1].rows == 50);
  }
}

TEST_CASE("Close of a portal and Describe of a statement answer in order", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("s", f.Parse("select $1::int"));
  f.tracker.OnDescribe('S', "s");
  f.tracker.OnBind("p", "s");
  f.tracker.OnDescribe('P', "p");
  f.tracker.OnExecute("p");
  f.tracker.OnClose('P', "p");
  f.tracker.OnClose('S', "s");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnParameterDescription().ok());
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  REQUIRE(f.tracker.OnCloseComplete().ok());
  REQUIRE(f.tracker.OnCloseComplete().ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].statement->text == "select $1::int");
}

TEST_CASE("Execute of an unknown portal records a placeholder statement", "[tracker]") {
  Fixture f;
  f.tracker.OnExecute("nope");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnErrorResponse("34000", "portal \"nope\" does not exist").ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  REQUIRE(r[0].statement != nullptr);
  CHECK(r[0].statement->statement_class == StatementClass::kUnknown);
  CHECK(r[0].sqlstate == "34000");
}

TEST_CASE("a failed COMMIT at Sync is not a desync", "[tracker]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("insert into t values (1)"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync("E...refused");
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("INSERT 0 1").ok());
  REQUIRE(f.tracker.OnErrorResponse("23503", "deferred foreign key violation").ok());
  CHECK(f.Rfq('I').empty());  // the caller already has an error for this batch
  CHECK(f.tracker.TakeRecords().size() == 1);
}

TEST_CASE("fastpath function calls are recorded", "[tracker]") {
  Fixture f;
  f.tracker.OnFunctionCall();
  REQUIRE(f.tracker.OnFunctionCallResponse().ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].statement->statement_class == StatementClass::kProcedure);
}

TEST_CASE("named statements are bounded", "[tracker]") {
  Fixture f;
  for (size_t i = 0; i <= StatementTracker::kMaxNamedStatements; ++i) {
    f.tracker.OnParse("s" + std::to_string(i), f.Parse("select 1"));
    REQUIRE(f.tracker.OnParseComplete().ok());
  }
  f.tracker.OnSync();
  f.Rfq('I');
  // s0 was forgotten (least recently used); the newest is still known.
  f.tracker.OnBind("", "s0");
  f.tracker.OnExecute("");
  f.tracker.OnBind("", "s" + std::to_string(StatementTracker::kMaxNamedStatements));
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq('I');
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 2);
  CHECK_FALSE(r[0].statement->parsed);
  CHECK(r[1].statement->text == "select 1");
}

}  // namespace
}  // namespace pgward::inspect
