// Store: sessions, idempotent statement events and the audit query.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <map>

#include "gateway/store/store.h"
#include "tests/unit/store/temp_dir.h"

namespace pgward::store {
namespace {

std::unique_ptr<Store> OpenMemory() {
  auto store = Store::Open(":memory:");
  REQUIRE(store.ok());
  return *std::move(store);
}

pgward::v1::SessionRecord Session(const std::string& id, const std::string& principal,
                                  const std::string& connection, int64_t started) {
  pgward::v1::SessionRecord s;
  s.set_session_id(id);
  s.set_principal(principal);
  s.set_issuer("https://idp.example");
  s.set_connection(connection);
  s.set_agent("edge-1");
  s.set_client_addr("192.0.2.10:40000");
  s.set_application_name("psql");
  s.set_caller_user("ignored");
  s.set_started_unix_ms(started);
  return s;
}

pgward::v1::StatementEvent Event(const std::string& session, int64_t time_us, const std::string& sql) {
  pgward::v1::StatementEvent e;
  e.set_session_id(session);
  e.set_time_unix_us(time_us);
  e.set_protocol("simple");
  e.set_statement(sql);
  e.set_fingerprint("fp");
  e.set_command_tag("SELECT 1");
  e.set_rows(1);
  e.set_duration_us(42);
  e.set_decision("allowed");
  e.set_rule("g_1");
  return e;
}

TEST_CASE("sessions are inserted, listed newest first, ended once and recovered at start", "[store][sessions]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  REQUIRE(store->InsertSession(Session("s2", "bot", "crm", 2000)).ok());
  REQUIRE(store->InsertSession(Session("s3", "human", "app", 3000)).ok());
  CHECK(store->InsertSession(Session("s1", "bot", "app", 1000)).code() == absl::StatusCode::kAlreadyExists);

  auto all = store->ListSessions({});
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].session_id() == "s3");
  CHECK((*all)[2].session_id() == "s1");
  CHECK((*all)[2].client_addr() == "192.0.2.10:40000");

  REQUIRE(store->EndSession("s1", 5000, "client_terminate").ok());
  REQUIRE(store->EndSession("s1", 6000, "client_disconnect").ok());  // first end wins
  CHECK(store->EndSession("nope", 1, "x").code() == absl::StatusCode::kNotFound);

  pgward::v1::ListSessionsRequest active;
  active.set_active_only(true);
  auto live = store->ListSessions(active);
  REQUIRE(live.ok());
  CHECK(live->size() == 2);

  pgward::v1::ListSessionsRequest bot_app;
  bot_app.set_principal("bot");
  bot_app.set_connection("app");
  auto one = store->ListSessions(bot_app);
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK((*one)[0].ended_unix_ms() == 5000);
  CHECK((*one)[0].end_reason() == "client_terminate");

  pgward::v1::ListSessionsRequest limited;
  limited.set_limit(1);
  CHECK(store->ListSessions(limited)->size() == 1);

  REQUIRE(store->EndAllOpenSessions(9000, "gateway_restart").ok());
  CHECK(store->ListSessions(active)->empty());
  auto after = store->ListSessions({});
  REQUIRE(after.ok());
  CHECK((*after)[0].end_reason() == "gateway_restart");
  CHECK((*after)[2].end_reason() == "client_terminate");
}

pgward::v1::SessionEnded AgentEnd(const std::string& session, int64_t at, const std::string& reason) {
  pgward::v1::SessionEnded e;
  e.set_session_id(session);
  e.set_ended_unix_ms(at);
  e.set_reason(reason);
  return e;
}

pgward::v1::SessionRecord Row(Store& store, const std::string& id) {
  auto all = store.ListSessions({});
  REQUIRE(all.ok());
  for (const auto& s : *all) {
    if (s.session_id() == id) return s;
  }
  FAIL("no session " << id);
  return {};
}

TEST_CASE("the agent's end replaces what the gateway saw of the caller, idempotently", "[store][sessions]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  REQUIRE(store->EndSession("s1", 5000, "client_disconnect").ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("s1", 4900, "client_terminate"), 9000).ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("s1", 4900, "client_terminate"), 9500).ok());  // replay
  CHECK(Row(*store, "s1").end_reason() == "client_terminate");
  CHECK(Row(*store, "s1").ended_unix_ms() == 4900);
  // The gateway's later, undecided view does not undo it.
  REQUIRE(store->EndSession("s1", 6000, "agent_lost").ok());
  CHECK(Row(*store, "s1").end_reason() == "client_terminate");
}

TEST_CASE("an agent's end arriving first ends an open row; the gateway's kill still takes precedence",
          "[store][sessions]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("s1", 2000, "client_disconnect"), 9000).ok());
  CHECK(Row(*store, "s1").ended_unix_ms() == 2000);
  REQUIRE(store->EndSession("s1", 2100, "killed").ok());
  CHECK(Row(*store, "s1").end_reason() == "killed");
  CHECK(Row(*store, "s1").ended_unix_ms() == 2000);  // the agent's time: when the upstream closed
}

TEST_CASE("a gateway decision (killed, grant_deleted, ..., principal_revoked) is never replaced", "[store][sessions]") {
  const std::string decided =
      GENERATE("killed", "grant_deleted", "grant_expired", "token_expired", "agent_deleted", "principal_revoked");
  CHECK(Store::IsGatewayDecidedEnd(decided));
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  REQUIRE(store->EndSession("s1", 5000, decided).ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("s1", 5100, "client_disconnect"), 9000).ok());
  REQUIRE(store->EndSession("s1", 5200, "killed").ok());
  CHECK(Row(*store, "s1").end_reason() == decided);
  CHECK(Row(*store, "s1").ended_unix_ms() == 5000);
}

TEST_CASE("an agent's end time is clamped to the session's life on the gateway's clock", "[store][sessions]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("early", "bot", "app", 1000)).ok());
  REQUIRE(store->InsertSession(Session("late", "bot", "app", 1000)).ok());
  REQUIRE(store->InsertSession(Session("unset", "bot", "app", 1000)).ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("early", 10, "upstream_closed"), 9000).ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("late", 99999999, "upstream_closed"), 9000).ok());
  REQUIRE(store->RecordAgentSessionEnd("edge-1", AgentEnd("unset", 0, ""), 9000).ok());
  CHECK(Row(*store, "early").ended_unix_ms() == 1000);
  CHECK(Row(*store, "late").ended_unix_ms() == 9000);
  CHECK(Row(*store, "unset").ended_unix_ms() == 9000);
  CHECK(Row(*store, "unset").end_reason() == "closed");
}

TEST_CASE("an agent cannot end another agent's session, and an unknown one is NOT_FOUND", "[store][sessions]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  CHECK(store->RecordAgentSessionEnd("edge-2", AgentEnd("s1", 2000, "client_terminate"), 9000).code() ==
        absl::StatusCode::kPermissionDenied);
  CHECK(Row(*store, "s1").ended_unix_ms() == 0);
  CHECK(store->RecordAgentSessionEnd("edge-1", AgentEnd("nope", 2000, "x"), 9000).code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("replayed statement events are stored once and counted once", "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> batch = {
      {1, Event("s1", 1'000'000, "SELECT $1")}, {2, Event("s1", 1'000'500, "SELECT 2")}};
  REQUIRE(store->InsertStatementEvents("edge-1", "boot-a", batch).ok());
  // Reconnect: the agent resends seq 2 with a new seq 3.
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> replay = {
      {2, Event("s1", 1'000'500, "SELECT 2")}, {3, Event("s1", 1'001'000, "SELECT 3")}};
  REQUIRE(store->InsertStatementEvents("edge-1", "boot-a", replay).ok());
  // Same seq from a new agent boot is a different event.
  REQUIRE(store->InsertStatementEvents("edge-1", "boot-b", {{1, Event("s1", 1'002'000, "SELECT 4")}}).ok());

  auto rows = store->ListAudit({});
  REQUIRE(rows.ok());
  CHECK(rows->size() == 4);
  auto sessions = store->ListSessions({});
  REQUIRE(sessions.ok());
  CHECK((*sessions)[0].statements() == 4);
}

TEST_CASE("an event's outcome is stored as sent, or derived from its sqlstate when none is given",
          "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  pgward::v1::StatementEvent plain = Event("s1", 1'000'000, "SELECT 1");
  pgward::v1::StatementEvent failed = Event("s1", 1'000'100, "SELECT 2");
  failed.set_sqlstate("42P01");
  pgward::v1::StatementEvent unknown = Event("s1", 1'000'200, "SELECT 3");
  unknown.set_outcome("unknown");
  REQUIRE(store->InsertStatementEvents("edge-1", "boot-a", {{1, plain}, {2, failed}, {3, unknown}}).ok());
  auto rows = store->ListAudit({});
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 3);
  std::map<std::string, std::string> outcome;
  for (const auto& r : *rows) outcome[r.statement()] = r.outcome();
  CHECK(outcome["SELECT 1"] == "ok");
  CHECK(outcome["SELECT 2"] == "error");
  CHECK(outcome["SELECT 3"] == "unknown");
}

TEST_CASE("audit rows carry the session's identity and honour filters, limit and order", "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  REQUIRE(store->InsertSession(Session("s2", "human", "crm", 1000)).ok());
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events;
  uint64_t seq = 0;
  for (int i = 0; i < 5; ++i) events.push_back({++seq, Event("s1", 10'000'000 + i * 1'000'000, "app" + std::to_string(i))});
  for (int i = 0; i < 3; ++i) events.push_back({++seq, Event("s2", 10'500'000 + i * 1'000'000, "crm" + std::to_string(i))});
  events.back().second.set_decision("denied");
  events.back().second.set_sqlstate("42501");
  events.back().second.set_error("permission denied by pgward policy");
  REQUIRE(store->InsertStatementEvents("edge-1", "boot", events).ok());

  auto all = store->ListAudit({});
  REQUIRE(all.ok());
  REQUIRE(all->size() == 8);
  for (size_t i = 1; i < all->size(); ++i) CHECK((*all)[i - 1].time_unix_us() >= (*all)[i].time_unix_us());
  const pgward::v1::AuditRow& newest = (*all)[0];
  CHECK(newest.statement() == "app4");
  CHECK(newest.principal() == "bot");
  CHECK(newest.issuer() == "https://idp.example");
  CHECK(newest.connection() == "app");
  CHECK(newest.agent() == "edge-1");
  CHECK(newest.client_addr() == "192.0.2.10:40000");
  CHECK(newest.protocol() == "simple");
  CHECK(newest.rows() == 1);
  CHECK(newest.duration_us() == 42);
  CHECK(newest.rule() == "g_1");
  CHECK(newest.id() > 0);

  pgward::v1::ListAuditRequest by_principal;
  by_principal.set_principal("human");
  auto human = store->ListAudit(by_principal);
  REQUIRE(human.ok());
  REQUIRE(human->size() == 3);
  CHECK((*human)[0].decision() == "denied");
  CHECK((*human)[0].sqlstate() == "42501");

  pgward::v1::ListAuditRequest by_connection;
  by_connection.set_connection("app");
  CHECK(store->ListAudit(by_connection)->size() == 5);

  pgward::v1::ListAuditRequest by_session;
  by_session.set_session_id("s2");
  CHECK(store->ListAudit(by_session)->size() == 3);

  pgward::v1::ListAuditRequest since;
  since.set_since_unix_ms(13'000);  // 13 s: app3 and app4; crm2 at 12.5 s is before
  auto recent = store->ListAudit(since);
  REQUIRE(recent.ok());
  CHECK(recent->size() == 2);

  pgward::v1::ListAuditRequest limited;
  limited.set_limit(2);
  auto two = store->ListAudit(limited);
  REQUIRE(two.ok());
  REQUIRE(two->size() == 2);
  CHECK((*two)[0].statement() == "app4");
  CHECK((*two)[1].statement() == "app3");
}

TEST_CASE("the audit id cursor pages oldest first, within its bound and filters", "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  REQUIRE(store->InsertSession(Session("s2", "human", "crm", 1000)).ok());
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events;
  // Times run backwards: the cursor follows ids (storage order), not times.
  for (uint64_t i = 1; i <= 7; ++i) {
    events.push_back({i, Event(i % 2 == 0 ? "s2" : "s1", 100'000'000 - static_cast<int64_t>(i), "x")});
  }
  REQUIRE(store->InsertStatementEvents("edge-1", "boot", events).ok());
  auto all = store->ListAudit({});
  REQUIRE(all->size() == 7);
  std::vector<int64_t> ids;
  for (const auto& r : *all) ids.push_back(r.id());
  std::sort(ids.begin(), ids.end());

  std::vector<int64_t> paged;
  pgward::v1::ListAuditRequest page;
  page.set_after_id(0);
  page.set_limit(3);
  while (true) {
    auto rows = store->ListAudit(page);
    REQUIRE(rows.ok());
    if (rows->empty()) break;
    CHECK(rows->size() <= 3);
    for (const auto& r : *rows) paged.push_back(r.id());
    page.set_after_id(rows->back().id());
  }
  CHECK(paged == ids);

  pgward::v1::ListAuditRequest bounded;
  bounded.set_after_id(ids[1]);
  bounded.set_up_to_id(ids[4]);
  auto middle = store->ListAudit(bounded);
  REQUIRE(middle->size() == 3);
  CHECK((*middle)[0].id() == ids[2]);
  CHECK((*middle)[2].id() == ids[4]);

  pgward::v1::ListAuditRequest filtered;
  filtered.set_after_id(0);
  filtered.set_principal("human");
  auto human = store->ListAudit(filtered);
  REQUIRE(human->size() == 3);
  for (const auto& r : *human) CHECK(r.principal() == "human");
}

TEST_CASE("the default audit limit is 100", "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1)).ok());
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events;
  for (uint64_t i = 1; i <= 150; ++i) events.push_back({i, Event("s1", static_cast<int64_t>(i), "x")});
  REQUIRE(store->InsertStatementEvents("edge-1", "boot", events).ok());
  CHECK(store->ListAudit({})->size() == 100);
}

TEST_CASE("an agent's events are stored only for the sessions brokered to it", "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("mine", "bot-a", "app", 1000)).ok());  // agent edge-1
  pgward::v1::SessionRecord theirs = Session("theirs", "bot-b", "app", 1000);
  theirs.set_agent("edge-2");
  REQUIRE(store->InsertSession(theirs).ok());
  const std::string session = GENERATE(std::string("theirs"), std::string("no-such-session"), std::string(""));
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> batch = {
      {1, Event("mine", 1'000'000, "SELECT 1")}, {2, Event(session, 1'000'100, "DROP TABLE customers")},
      {3, Event("mine", 1'000'200, "SELECT 2")}};
  auto inserted = store->InsertStatementEvents("edge-1", "boot", batch);
  REQUIRE(inserted.ok());
  CHECK(inserted->stored == 2);
  CHECK(inserted->refused == std::vector<std::pair<uint64_t, std::string>>{{2, session}});
  auto replay = store->InsertStatementEvents("edge-1", "boot", batch);
  REQUIRE(replay.ok());
  CHECK(replay->replayed == 2);
  CHECK(replay->refused.size() == 1);
  auto rows = store->ListAudit({});
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 2);
  for (const auto& row : *rows) CHECK(row.session_id() == "mine");
  CHECK(store->ListSessions({})->at(0).statements() + store->ListSessions({})->at(1).statements() == 2);
  CHECK(store->SessionAgent("theirs").value_or("") == "edge-2");
  CHECK(absl::IsNotFound(store->SessionAgent("no-such-session").status()));
}

Store::AgentBatch Batch(const std::string& agent, const std::string& boot,
                        std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> statements,
                        std::vector<std::pair<uint64_t, pgward::v1::SessionEnded>> ends = {}) {
  Store::AgentBatch batch;
  batch.agent = agent;
  batch.boot_id = boot;
  batch.statements = std::move(statements);
  batch.session_ends = std::move(ends);
  return batch;
}

TEST_CASE("several agents' batches are stored in one call, each with its own result", "[store][audit]") {
  auto store = OpenMemory();
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  pgward::v1::SessionRecord other = Session("s2", "bot", "app", 1000);
  other.set_agent("edge-2");
  REQUIRE(store->InsertSession(other).ok());

  Store::AgentBatch first = Batch("edge-1", "boot", {{1, Event("s1", 2'000'000, "SELECT 1")}, {2, Event("s1", 2'000'100, "SELECT 2")}});
  // edge-2 replays seq 1 within the same call, and forges an event and an end for edge-1's s1.
  Store::AgentBatch second = Batch("edge-2", "boot", {{1, Event("s2", 2'000'200, "SELECT 3")}, {1, Event("s2", 2'000'200, "SELECT 3")},
                                                       {2, Event("s1", 2'000'300, "forged")}},
                                   {{3, AgentEnd("s1", 2500, "client_terminate")}, {4, AgentEnd("never-opened", 2500, "")}});
  Store::AgentBatch third = Batch("edge-1", "boot", {{3, Event("s1", 2'000'400, "SELECT 4")}},
                                  {{4, AgentEnd("s1", 3000, "client_terminate")}});
  auto results = store->InsertAuditBatches({&first, &second, &third}, 9000);
  REQUIRE(results.ok());
  REQUIRE(results->size() == 3);
  CHECK((*results)[0].stored == 2);
  CHECK((*results)[0].refused.empty());
  CHECK((*results)[1].stored == 1);
  CHECK((*results)[1].replayed == 1);
  CHECK((*results)[1].refused == std::vector<std::pair<uint64_t, std::string>>{{2, "s1"}, {3, "s1"}});
  CHECK((*results)[2].stored == 1);
  CHECK(Row(*store, "s1").statements() == 3);
  CHECK(Row(*store, "s1").ended_unix_ms() == 3000);
  CHECK(Row(*store, "s2").statements() == 1);
  CHECK(Row(*store, "s2").ended_unix_ms() == 0);
}

TEST_CASE("batches stored together are stored all or not at all", "[store][audit]") {
  pgward::testing::TempDir dir;
  const std::string path = dir.File("pgward.db");
  auto opened = Store::Open(path);
  REQUIRE(opened.ok());
  std::unique_ptr<Store> store = *std::move(opened);
  REQUIRE(store->InsertSession(Session("s1", "bot", "app", 1000)).ok());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "CREATE TRIGGER poison BEFORE INSERT ON statement_events WHEN NEW.statement = 'poison'"
                       " BEGIN SELECT RAISE(ABORT, 'poisoned for the test'); END",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  Store::AgentBatch good = Batch("edge-1", "boot", {{1, Event("s1", 2'000'000, "SELECT 1")}},
                                 {{3, AgentEnd("s1", 2500, "client_terminate")}});
  Store::AgentBatch bad = Batch("edge-1", "boot", {{2, Event("s1", 2'000'100, "poison")}});
  auto results = store->InsertAuditBatches({&good, &bad}, 9000);
  CHECK_FALSE(results.ok());
  CHECK(store->ListAudit({})->empty());
  CHECK(Row(*store, "s1").statements() == 0);
  CHECK(Row(*store, "s1").ended_unix_ms() == 0);
  // The good batch alone goes through.
  REQUIRE(store->InsertAuditBatches({&good}, 9000).ok());
  CHECK(store->ListAudit({})->size() == 1);
}


}  // namespace
}  // namespace pgward::store
