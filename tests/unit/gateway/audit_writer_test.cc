// The audit writer: never acknowledges events it could not store, nor any after them; stores an
// agent's events only for its own sessions; bounds its queue and pauses readers when full.
#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "gateway/broker/audit_writer.h"
#include "gateway/store/store.h"

namespace {

class Outcomes {
 public:
  pgward::gateway::AuditWriter::Done Next() {
    return [this](bool stored) {
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(stored);
      cv_.notify_all();
    };
  }
  std::vector<bool> Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return results_.size() >= n; });
    return results_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> results_;
};

pgward::gateway::AgentEvents Events(uint64_t first, uint64_t count, const std::string& session = "s1") {
  pgward::gateway::AgentEvents events;
  for (uint64_t seq = first; seq < first + count; ++seq) {
    pgward::v1::StatementEvent event;
    event.set_session_id(session);
    event.set_statement("SELECT $1");
    event.set_decision("allowed");
    events.statements.emplace_back(seq, event);
  }
  return events;
}

pgward::v1::SessionRecord SessionOf(const std::string& id, const std::string& agent) {
  pgward::v1::SessionRecord session;
  session.set_session_id(id);
  session.set_principal("alice");
  session.set_connection("shop");
  session.set_agent(agent);
  return session;
}

// A temporary directory with a file store in it, removed at the end.
class FileStore {
 public:
  explicit FileStore(const std::string& name)
      : dir_(std::filesystem::temp_directory_path() / ("pgward-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = pgward::store::Store::Open(path());
    REQUIRE(store.ok());
    store_ = *std::move(store);
  }
  ~FileStore() {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string path() const { return (dir_ / "pgward.db").string(); }
  pgward::store::Store& store() { return *store_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<pgward::store::Store> store_;
};

void Exec(const std::string& db, const std::string& sql) {
  sqlite3* handle = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &handle) == SQLITE_OK);
  sqlite3_busy_timeout(handle, 5000);
  char* error = nullptr;
  int rc = sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, &error);
  INFO((error ? error : ""));
  sqlite3_free(error);
  sqlite3_close(handle);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("after a failed write nothing later in the stream is acked until the agent reconnects", "[audit]") {
  FileStore files("audit");
  const std::string db = files.path();
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());

  Outcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store);
    writer.StartStream("a1", "boot");
    writer.Submit("a1", "boot", Events(1, 2), outcomes.Next());
    REQUIRE(outcomes.Wait(1) == std::vector<bool>{true});

    // Make the next write fail, then heal the store: the stream stays poisoned anyway.
    Exec(db, "ALTER TABLE statement_events RENAME TO statement_events_hidden");
    writer.Submit("a1", "boot", Events(3, 2), outcomes.Next());
    REQUIRE(outcomes.Wait(2) == std::vector<bool>{true, false});
    Exec(db, "ALTER TABLE statement_events_hidden RENAME TO statement_events");
    writer.Submit("a1", "boot", Events(5, 2), outcomes.Next());
    REQUIRE(outcomes.Wait(3) == std::vector<bool>{true, false, false});

    // The agent reconnects and resends everything unacknowledged: stored and acked.
    writer.StartStream("a1", "boot");
    writer.Submit("a1", "boot", Events(3, 4), outcomes.Next());
    REQUIRE(outcomes.Wait(4) == std::vector<bool>{true, false, false, true});
  }
  pgward::v1::ListAuditRequest all;
  all.set_limit(100);
  auto rows = store.ListAudit(all);
  REQUIRE(rows.ok());
  CHECK(rows->size() == 6);
}

TEST_CASE("events naming another agent's session or no session are refused, counted and acked", "[audit]") {
  FileStore files("audit-forged");
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());
  REQUIRE(store.InsertSession(SessionOf("s2", "a2")).ok());
  Outcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store);
    writer.StartStream("a2", "boot");
    pgward::gateway::AgentEvents forged = Events(1, 2, "s1");          // a1's session
    pgward::gateway::AgentEvents unknown = Events(3, 1, "no-such");    // nobody's
    pgward::gateway::AgentEvents own = Events(4, 1, "s2");             // a2's own
    forged.statements.insert(forged.statements.end(), unknown.statements.begin(), unknown.statements.end());
    forged.statements.insert(forged.statements.end(), own.statements.begin(), own.statements.end());
    pgward::v1::SessionEnded ended;
    ended.set_session_id("s1");
    forged.session_ends.emplace_back(5, ended);
    pgward::v1::SessionEnded never_opened;  // a failed login has no session row: not a forgery
    never_opened.set_session_id("login-failed");
    forged.session_ends.emplace_back(6, never_opened);
    pgward::v1::SessionEnded own_end;
    own_end.set_session_id("s2");
    own_end.set_reason("client_terminate");
    forged.session_ends.emplace_back(7, own_end);
    writer.Submit("a2", "boot", std::move(forged), outcomes.Next());
    // Handled (so the agent's later events are not held up), though not stored.
    REQUIRE(outcomes.Wait(1) == std::vector<bool>{true});
    CHECK(writer.refused_events() == 4);
  }
  pgward::v1::ListAuditRequest of_s1;
  of_s1.set_session_id("s1");
  CHECK(store.ListAudit(of_s1)->empty());
  pgward::v1::ListAuditRequest of_s2;
  of_s2.set_session_id("s2");
  CHECK(store.ListAudit(of_s2)->size() == 1);
  // The agent's own session end is on its row; the forged one left a1's session open.
  absl::StatusOr<std::vector<pgward::v1::SessionRecord>> sessions = store.ListSessions({});
  REQUIRE(sessions.ok());
  for (const auto& session : *sessions) {
    if (session.session_id() == "s1") CHECK(session.ended_unix_ms() == 0);
    if (session.session_id() == "s2") CHECK(session.end_reason() == "client_terminate");
  }
}

TEST_CASE("a full audit queue pauses readers, drops nothing and resumes them once drained", "[audit]") {
  FileStore files("audit-queue");
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());

  // Another connection holds the write lock, so the writer blocks (busy_timeout 5 s) and
  // everything submitted meanwhile waits in the queue.
  sqlite3* holder = nullptr;
  REQUIRE(sqlite3_open(files.path().c_str(), &holder) == SQLITE_OK);
  REQUIRE(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);

  std::mutex mu;
  std::condition_variable cv;
  int resumed = 0;
  auto resume = [&] {
    std::lock_guard<std::mutex> lock(mu);
    ++resumed;
    cv.notify_all();
  };
  Outcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store, pgward::gateway::AuditQueueLimits{10, size_t{1} << 30});
    writer.StartStream("a1", "boot");
    CHECK(writer.Submit("a1", "boot", Events(1, 4), outcomes.Next(), resume));
    CHECK(writer.Submit("a1", "boot", Events(5, 4), outcomes.Next(), resume));
    // 12 events reach the limit of 10: the reader must wait.
    CHECK_FALSE(writer.Submit("a1", "boot", Events(9, 4), outcomes.Next(), resume));
    CHECK(writer.queued_events() == 12);
    CHECK(writer.queued_bytes() > 0);
    {
      std::lock_guard<std::mutex> lock(mu);
      CHECK(resumed == 0);
    }
    REQUIRE(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK);
    {
      std::unique_lock<std::mutex> lock(mu);
      REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return resumed == 1; }));
    }
    REQUIRE(outcomes.Wait(3) == std::vector<bool>{true, true, true});
    CHECK(writer.queued_events() == 0);
    CHECK(writer.queued_bytes() == 0);
    // Below the limit again: the next batch reads on at once.
    CHECK(writer.Submit("a1", "boot", Events(13, 1), outcomes.Next(), resume));
    REQUIRE(outcomes.Wait(4).size() == 4);
  }
  sqlite3_close(holder);
  pgward::v1::ListAuditRequest all;
  all.set_limit(100);
  CHECK(store.ListAudit(all)->size() == 13);
}

namespace {

// Records (label, stored) in the order the writer runs the done callbacks; the first batch's
// callback can be held so everything submitted meanwhile queues up for the writer's next
// wake-up (done runs on the writer thread).
class OrderedOutcomes {
 public:
  pgward::gateway::AuditWriter::Done Next(std::string label, bool hold = false) {
    return [this, label, hold](bool stored) {
      std::unique_lock<std::mutex> lock(mu_);
      results_.emplace_back(label, stored);
      cv_.notify_all();
      if (hold) cv_.wait(lock, [this] { return released_; });
    };
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  std::vector<std::pair<std::string, bool>> Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return results_.size() >= n; });
    return results_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<std::pair<std::string, bool>> results_;
};

using Outcome = std::pair<std::string, bool>;

size_t AuditRows(pgward::store::Store& store, const std::string& session) {
  pgward::v1::ListAuditRequest request;
  request.set_session_id(session);
  request.set_limit(1000);
  auto rows = store.ListAudit(request);
  REQUIRE(rows.ok());
  return rows->size();
}

uint64_t StatementCount(pgward::store::Store& store, const std::string& session) {
  auto sessions = store.ListSessions({});
  REQUIRE(sessions.ok());
  for (const auto& s : *sessions) {
    if (s.session_id() == session) return s.statements();
  }
  FAIL("no session " << session);
  return 0;
}

}  // namespace

TEST_CASE("batches of several agents queued at one wake-up share one transaction, acked in order", "[audit]") {
  FileStore files("audit-group");
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());
  REQUIRE(store.InsertSession(SessionOf("s2", "a2")).ok());
  OrderedOutcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store);
    writer.StartStream("a1", "boot");
    writer.StartStream("a2", "boot");
    writer.Submit("a1", "boot", Events(1, 2, "s1"), outcomes.Next("a1:1-2", /*hold=*/true));
    REQUIRE(outcomes.Wait(1) == std::vector<Outcome>{{"a1:1-2", true}});
    CHECK(writer.transactions() == 1);
    // The writer is busy acking the first batch: these four wait for its next wake-up.
    writer.Submit("a1", "boot", Events(3, 2, "s1"), outcomes.Next("a1:3-4"));
    writer.Submit("a2", "boot", Events(1, 3, "s2"), outcomes.Next("a2:1-3"));
    pgward::gateway::AgentEvents with_end = Events(5, 2, "s1");
    pgward::v1::SessionEnded ended;
    ended.set_session_id("s1");
    ended.set_reason("client_terminate");
    with_end.session_ends.emplace_back(7, ended);
    writer.Submit("a1", "boot", std::move(with_end), outcomes.Next("a1:5-7"));
    writer.Submit("a2", "boot", Events(4, 1, "s2"), outcomes.Next("a2:4"));
    CHECK(writer.queued_events() == 2 + 3 + 3 + 1);  // the first batch is done with
    outcomes.Release();
    REQUIRE(outcomes.Wait(5) == std::vector<Outcome>{{"a1:1-2", true},
                                                     {"a1:3-4", true},
                                                     {"a2:1-3", true},
                                                     {"a1:5-7", true},
                                                     {"a2:4", true}});
    CHECK(writer.transactions() == 2);
    CHECK(writer.queued_events() == 0);
  }
  CHECK(AuditRows(store, "s1") == 6);
  CHECK(AuditRows(store, "s2") == 4);
  CHECK(StatementCount(store, "s1") == 6);
  CHECK(StatementCount(store, "s2") == 4);
  auto sessions = store.ListSessions({});
  REQUIRE(sessions.ok());
  for (const auto& s : *sessions) {
    if (s.session_id() == "s1") CHECK(s.end_reason() == "client_terminate");
  }
}

TEST_CASE("a batch the store refuses fails alone: other agents' batches of the same wake-up are stored",
          "[audit]") {
  FileStore files("audit-poison");
  const std::string db = files.path();
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());
  REQUIRE(store.InsertSession(SessionOf("s2", "a2")).ok());
  OrderedOutcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store);
    writer.StartStream("a1", "boot");
    writer.StartStream("a2", "boot");
    writer.Submit("a1", "boot", Events(1, 1, "s1"), outcomes.Next("a1:1", /*hold=*/true));
    REQUIRE(outcomes.Wait(1).size() == 1);
    // Every row of agent a2 now fails to insert; a1's rows do not.
    Exec(db,
         "CREATE TRIGGER poison BEFORE INSERT ON statement_events WHEN NEW.agent = 'a2'"
         " BEGIN SELECT RAISE(ABORT, 'poisoned for the test'); END");
    writer.Submit("a2", "boot", Events(1, 2, "s2"), outcomes.Next("a2:1-2"));
    writer.Submit("a1", "boot", Events(2, 2, "s1"), outcomes.Next("a1:2-3"));
    writer.Submit("a2", "boot", Events(3, 1, "s2"), outcomes.Next("a2:3"));  // after a2's gap
    writer.Submit("a1", "boot", Events(4, 1, "s1"), outcomes.Next("a1:4"));
    outcomes.Release();
    REQUIRE(outcomes.Wait(5) == std::vector<Outcome>{{"a1:1", true},
                                                     {"a2:1-2", false},
                                                     {"a1:2-3", true},
                                                     {"a2:3", false},
                                                     {"a1:4", true}});
    CHECK(AuditRows(store, "s2") == 0);
    CHECK(AuditRows(store, "s1") == 4);
    // a2's stream stays poisoned after the store heals, until a2 reconnects and resends.
    Exec(db, "DROP TRIGGER poison");
    writer.Submit("a2", "boot", Events(4, 1, "s2"), outcomes.Next("a2:4 same stream"));
    REQUIRE(outcomes.Wait(6).back() == Outcome{"a2:4 same stream", false});
    writer.StartStream("a2", "boot");
    writer.Submit("a2", "boot", Events(1, 4, "s2"), outcomes.Next("a2:1-4 resent"));
    REQUIRE(outcomes.Wait(7).back() == Outcome{"a2:1-4 resent", true});
  }
  CHECK(AuditRows(store, "s1") == 4);
  CHECK(AuditRows(store, "s2") == 4);
  CHECK(StatementCount(store, "s1") == 4);
  CHECK(StatementCount(store, "s2") == 4);
}

TEST_CASE("a failed shared transaction acks nothing when the store itself fails", "[audit]") {
  FileStore files("audit-group-fail");
  const std::string db = files.path();
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());
  REQUIRE(store.InsertSession(SessionOf("s2", "a2")).ok());
  OrderedOutcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store);
    writer.StartStream("a1", "boot");
    writer.StartStream("a2", "boot");
    writer.Submit("a1", "boot", Events(1, 1, "s1"), outcomes.Next("a1:1", /*hold=*/true));
    REQUIRE(outcomes.Wait(1).size() == 1);
    Exec(db, "ALTER TABLE statement_events RENAME TO statement_events_hidden");
    writer.Submit("a1", "boot", Events(2, 2, "s1"), outcomes.Next("a1:2-3"));
    writer.Submit("a2", "boot", Events(1, 2, "s2"), outcomes.Next("a2:1-2"));
    outcomes.Release();
    REQUIRE(outcomes.Wait(3) ==
            std::vector<Outcome>{{"a1:1", true}, {"a1:2-3", false}, {"a2:1-2", false}});
    Exec(db, "ALTER TABLE statement_events_hidden RENAME TO statement_events");
  }
  CHECK(AuditRows(store, "s1") == 1);
  CHECK(AuditRows(store, "s2") == 0);
  CHECK(StatementCount(store, "s1") == 1);
  CHECK(StatementCount(store, "s2") == 0);
}

TEST_CASE("batches of a replaced stream are dropped unacked even when they share a wake-up with the new one",
          "[audit]") {
  FileStore files("audit-generation");
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());
  OrderedOutcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(store);
    writer.StartStream("a1", "boot");
    writer.Submit("a1", "boot", Events(1, 2, "s1"), outcomes.Next("old:1-2", /*hold=*/true));
    REQUIRE(outcomes.Wait(1).size() == 1);
    writer.Submit("a1", "boot", Events(3, 2, "s1"), outcomes.Next("old:3-4"));
    // The agent reconnects; its new stream resends from the last ack it got (none yet).
    writer.StartStream("a1", "boot");
    writer.Submit("a1", "boot", Events(1, 6, "s1"), outcomes.Next("new:1-6"));
    outcomes.Release();
    REQUIRE(outcomes.Wait(3) ==
            std::vector<Outcome>{{"old:1-2", true}, {"old:3-4", false}, {"new:1-6", true}});
  }
  CHECK(AuditRows(store, "s1") == 6);
  CHECK(StatementCount(store, "s1") == 6);
}

TEST_CASE("the writer keeps an agent boot's state only while it has batches in flight or a failure", "[audit]") {
  FileStore files("audit-boots");
  const std::string db = files.path();
  pgward::store::Store& store = files.store();
  REQUIRE(store.InsertSession(SessionOf("s1", "a1")).ok());
  Outcomes outcomes;
  pgward::gateway::AuditWriter writer(store);
  // An agent (or a hostile one) naming boot after boot: once stored, nothing is kept.
  for (int i = 0; i < 200; ++i) {
    const std::string boot = "boot-" + std::to_string(i);
    writer.StartStream("a1", boot);
    writer.Submit("a1", boot, Events(1, 1), outcomes.Next());
  }
  REQUIRE(outcomes.Wait(200) == std::vector<bool>(200, true));
  CHECK(writer.tracked_boots() == 0);

  // A failed write is remembered (later batches of that stream are not stored) ...
  Exec(db, "ALTER TABLE statement_events RENAME TO statement_events_hidden");
  writer.Submit("a1", "boot-x", Events(10, 1), outcomes.Next());
  REQUIRE(outcomes.Wait(201).back() == false);
  Exec(db, "ALTER TABLE statement_events_hidden RENAME TO statement_events");
  CHECK(writer.tracked_boots() == 1);
  writer.Submit("a1", "boot-x", Events(11, 1), outcomes.Next());
  REQUIRE(outcomes.Wait(202).back() == false);
  // ... until the agent reconnects, which forgets it; the resent events are stored.
  writer.StartStream("a1", "boot-x");
  CHECK(writer.tracked_boots() == 0);
  writer.Submit("a1", "boot-x", Events(10, 2), outcomes.Next());
  REQUIRE(outcomes.Wait(203).back() == true);
  CHECK(writer.tracked_boots() == 0);
}
