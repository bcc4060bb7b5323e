// Tests for StatementTracker, simple query protocol and COPY: records, errors, empty queries,
// durations with a fake clock.
#include "agent/inspect/statement_tracker.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/unit/inspect/tracker_fixture.h"

namespace pgward::inspect {
namespace {

TEST_CASE("command tags give row counts only when they carry one", "[tracker]") {
  auto [tag, rows] = GENERATE(table<std::string, int64_t>({
      {"SELECT 5", 5},
      {"INSERT 0 3", 3},
      {"UPDATE 0", 0},
      {"DELETE 12", 12},
      {"COPY 1000000", 1000000},
      {"FETCH 7", 7},
      {"MERGE 2", 2},
      {"CREATE TABLE", -1},
      {"BEGIN", -1},
      {"", -1},
      {"SELECT x", -1},
  }));
  CAPTURE(tag);
  CHECK(RowsFromCommandTag(tag) == rows);
}

TEST_CASE("simple query with one statement gives one record", "[tracker]") {
  Fixture f;
  f.tracker.OnQuery(f.Query("select * from t where id = 1"));
  f.now += 250;
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.Rfq().empty());
  auto records = f.tracker.TakeRecords();
  REQUIRE(records.size() == 1);
  CHECK_FALSE(records[0].extended);
  CHECK(records[0].statement->normalized == "select * from t where id = $1");
  CHECK(records[0].command_tag == "SELECT 1");
  CHECK(records[0].rows == 1);
  CHECK(records[0].time_unix_us == 1'000'000);
  CHECK(records[0].duration_us == 250);
  CHECK(records[0].sqlstate.empty());
  CHECK(f.tracker.PendingOperations() == 0);
  CHECK(f.tracker.TakeRecords().empty());
}

TEST_CASE("multi-statement query records each statement, timed from the previous completion", "[tracker]") {
  Fixture f;
  f.tracker.OnQuery(f.Query("insert into t values (1); select 2; update t set a = 3"));
  f.now += 100;
  REQUIRE(f.tracker.OnCommandComplete("INSERT 0 1").ok());
  f.now += 30;
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.now += 70;
  REQUIRE(f.tracker.OnCommandComplete("UPDATE 4").ok());
  f.Rfq();
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 3);
  CHECK(r[0].statement->text == "insert into t values (1)");
  CHECK(r[0].duration_us == 100);
  CHECK(r[1].statement->text == "select 2");
  CHECK(r[1].duration_us == 30);
  CHECK(r[2].rows == 4);
  CHECK(r[2].duration_us == 70);
}

TEST_CASE("an error mid multi-statement query ends it without records for the rest", "[tracker]") {
  Fixture f;
  f.tracker.OnQuery(f.Query("select 1; insert into missing values (1); select 3"));
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.now += 40;
  REQUIRE(f.tracker.OnErrorResponse("42P01", "relation \"missing\" does not exist").ok());
  CHECK(f.Rfq().empty());
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 2);
  CHECK(r[1].statement->text == "insert into missing values (1)");
  CHECK(r[1].command_tag.empty());
  CHECK(r[1].rows == -1);
  CHECK(r[1].sqlstate == "42P01");
  CHECK(r[1].error == "relation \"missing\" does not exist");
  CHECK(r[1].duration_us == 40);
  // A further CommandComplete for this Query would be a desync.
  f.tracker.OnQuery(f.Query("select 1; select 2"));
  REQUIRE(f.tracker.OnErrorResponse("57014", "canceled").ok());
  CHECK(f.tracker.OnCommandComplete("SELECT 1").code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("an empty query gives EmptyQueryResponse and no record", "[tracker]") {
  Fixture f;
  f.tracker.OnQuery(f.Query("  ;  "));
  REQUIRE(f.tracker.OnEmptyQueryResponse().ok());
  f.Rfq();
  CHECK(f.tracker.TakeRecords().empty());
  CHECK(f.tracker.PendingOperations() == 0);
}

TEST_CASE("simple-protocol COPY in and out each give one record", "[tracker]") {
  Fixture f;
  SECTION("copy in") {
    f.tracker.OnQuery(f.Query("copy t from stdin"));
    REQUIRE(f.tracker.OnCopyInResponse().ok());
    f.tracker.OnCopyDone();
    REQUIRE(f.tracker.OnCommandComplete("COPY 3").ok());
    f.Rfq();
    auto r = f.tracker.TakeRecords();
    REQUIRE(r.size() == 1);
    CHECK(r[0].statement->statement_class == StatementClass::kCopyIn);
    CHECK(r[0].rows == 3);
  }
  SECTION("copy out") {
    f.tracker.OnQuery(f.Query("copy (select * from t) to stdout"));
    REQUIRE(f.tracker.OnCopyOutResponse().ok());
    REQUIRE(f.tracker.OnCommandComplete("COPY 10").ok());
    f.Rfq();
    auto r = f.tracker.TakeRecords();
    REQUIRE(r.size() == 1);
    CHECK(r[0].statement->statement_class == StatementClass::kCopyOut);
    CHECK(r[0].rows == 10);
  }
  SECTION("copy in failed by the client") {
    f.tracker.OnQuery(f.Query("copy t from stdin"));
    REQUIRE(f.tracker.OnCopyInResponse().ok());
    f.tracker.OnCopyFail();
    REQUIRE(f.tracker.OnErrorResponse("57014", "COPY from stdin failed: cancelled").ok());
    f.Rfq();
    auto r = f.tracker.TakeRecords();
    REQUIRE(r.size() == 1);
    CHECK(r[0].sqlstate == "57014");
  }
}

TEST_CASE("extended COPY FROM STDIN: Syncs sent during copy-in get no ReadyForQuery", "[tracker]") {
  // libpq's PQexecParams("COPY ... FROM STDIN"): Parse/Bind/Describe/Execute/Sync, then
  // CopyData.../CopyDone/Sync. The server ignores the first Sync (55.2.6).
  Fixture f;
  auto both_ways = GENERATE(false, true);  // CopyDone before or after CopyInResponse is seen
  f.tracker.OnParse("", f.Parse("copy t from stdin"));
  f.tracker.OnBind("", "");
  f.tracker.OnDescribe('P', "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  if (both_ways) {
    f.tracker.OnCopyDone();
    f.tracker.OnSync();
  }
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnNoData().ok());
  REQUIRE(f.tracker.OnCopyInResponse().ok());
  if (!both_ways) {
    f.tracker.OnSync();  // sent while the server is in copy-in: ignored by it
    f.tracker.OnCopyDone();
    f.tracker.OnSync();
  }
  REQUIRE(f.tracker.OnCommandComplete("COPY 2").ok());
  f.Rfq();
  CHECK(f.tracker.PendingOperations() == 0);
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].extended);
  CHECK(r[0].rows == 2);
  // The conversation is still in step.
  f.tracker.OnQuery(f.Query("select 1"));
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq();
  CHECK(f.tracker.TakeRecords().size() == 1);
}

}  // namespace
}  // namespace pgward::inspect
