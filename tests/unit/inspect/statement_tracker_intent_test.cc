// Tests for StatementTracker's intents: the ids the agent's event spool writes before a statement
// goes upstream, and SettledThrough(), which says which of them can produce no record any more.
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "agent/inspect/statement_tracker.h"
#include "tests/unit/inspect/tracker_fixture.h"

namespace pgward::inspect {
namespace {

struct SeenIntent {
  uint64_t id;
  std::string text;
  bool extended;
};

struct IntentFixture : Fixture {
  std::vector<SeenIntent> seen;
  IntentFixture() {
    tracker.SetIntentObserver([this](uint64_t id, const AnalyzedStatementPtr& statement, bool extended, int64_t) {
      seen.push_back({id, statement ? statement->text : std::string("<null>"), extended});
    });
  }
};

TEST_CASE("each statement of a Query is an intent, settled as its result comes back", "[tracker][intent]") {
  IntentFixture f;
  CHECK(f.tracker.SettledThrough() == 0);
  f.tracker.OnQuery(f.Query("select 1; insert into t values (2); select 3"));
  REQUIRE(f.seen.size() == 3);
  CHECK(f.seen[0].id == 1);
  CHECK(f.seen[0].text == "select 1");
  CHECK(f.seen[1].id == 2);
  CHECK(f.seen[1].text == "insert into t values (2)");
  CHECK(f.seen[2].id == 3);
  CHECK_FALSE(f.seen[2].extended);
  CHECK(f.tracker.SettledThrough() == 0);  // nothing came back: all three may still run
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.tracker.SettledThrough() == 1);
  SECTION("an error settles the statements the server will not run") {
    REQUIRE(f.tracker.OnErrorResponse("42P01", "relation \"t\" does not exist").ok());
    CHECK(f.tracker.SettledThrough() == 3);
    f.Rfq();
    auto r = f.tracker.TakeRecords();
    REQUIRE(r.size() == 2);
    CHECK(r[0].intent_id == 1);
    CHECK(r[1].intent_id == 2);
    CHECK(r[1].sqlstate == "42P01");
  }
  SECTION("all complete") {
    REQUIRE(f.tracker.OnCommandComplete("INSERT 0 1").ok());
    CHECK(f.tracker.SettledThrough() == 2);
    REQUIRE(f.tracker.OnRowDescription().ok());
    REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
    f.Rfq();
    CHECK(f.tracker.SettledThrough() == 3);
    auto r = f.tracker.TakeRecords();
    REQUIRE(r.size() == 3);
    CHECK(r[2].intent_id == 3);
  }
}

TEST_CASE("an Execute's intent names the statement its Bind will run", "[tracker][intent]") {
  IntentFixture f;
  f.tracker.OnParse("s1", f.Parse("update t set a = $1"));
  f.tracker.OnBind("", "s1");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  REQUIRE(f.seen.size() == 1);  // Parse and Bind run nothing
  CHECK(f.seen[0].text == "update t set a = $1");
  CHECK(f.seen[0].extended);
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("UPDATE 2").ok());
  f.Rfq();
  // A later batch binds the statement the server already has.
  f.tracker.OnBind("", "s1");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  REQUIRE(f.seen.size() == 2);
  CHECK(f.seen[1].id == 2);
  CHECK(f.seen[1].text == "update t set a = $1");
  CHECK(f.tracker.SettledThrough() == 1);
}

TEST_CASE("an Execute skipped after an error in its pipeline is settled without a record", "[tracker][intent]") {
  IntentFixture f;
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
  REQUIRE(f.seen.size() == 3);
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnErrorResponse("23505", "duplicate key").ok());
  f.Rfq('I');
  // "select 2" never runs; "select 3" is still to come.
  CHECK(f.tracker.SettledThrough() == 2);
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq('I');
  CHECK(f.tracker.SettledThrough() == 3);
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 2);
  CHECK(r[0].intent_id == 1);
  CHECK(r[1].intent_id == 3);
}

TEST_CASE("a suspended portal keeps its intent open until its record is released", "[tracker][intent]") {
  IntentFixture f;
  f.tracker.OnParse("", f.Parse("select * from big"));
  f.tracker.OnBind("c1", "");
  f.tracker.OnExecute("c1", 100);
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnPortalSuspended().ok());
  f.Rfq('T');
  CHECK(f.tracker.TakeRecords().empty());
  CHECK(f.tracker.SettledThrough() == 0);  // the portal's statement has not finished
  // Another statement in the same transaction completes; the portal still holds intent 1.
  f.tracker.OnQuery(f.Query("select 9"));
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  f.Rfq('T');
  CHECK(f.tracker.SettledThrough() == 0);
  REQUIRE(f.tracker.TakeRecords().size() == 1);
  // The next fetch is intent 3; when the portal completes, its one record carries intent 1 and
  // intent 3 (a further fetch of the same statement) is settled with it.
  f.tracker.OnExecute("c1", 100);
  f.tracker.OnSync();
  REQUIRE(f.seen.size() == 3);
  CHECK(f.seen[2].text == "select * from big");
  REQUIRE(f.tracker.OnCommandComplete("SELECT 42").ok());
  f.Rfq('T');
  CHECK(f.tracker.SettledThrough() == 3);
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].intent_id == 1);
  CHECK(r[0].rows == 142);
}

TEST_CASE("a fastpath function call is an intent", "[tracker][intent]") {
  IntentFixture f;
  f.tracker.OnFunctionCall();
  REQUIRE(f.seen.size() == 1);
  CHECK(f.tracker.SettledThrough() == 0);
  REQUIRE(f.tracker.OnFunctionCallResponse().ok());
  f.Rfq();
  CHECK(f.tracker.SettledThrough() == 1);
  auto r = f.tracker.TakeRecords();
  REQUIRE(r.size() == 1);
  CHECK(r[0].intent_id == 1);
}

}  // namespace
}  // namespace pgward::inspect
