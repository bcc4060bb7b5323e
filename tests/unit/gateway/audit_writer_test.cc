// The audit writer never acknowledges events it could not store, nor any after them.
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

std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> Events(uint64_t first, uint64_t count) {
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events;
  for (uint64_t seq = first; seq < first + count; ++seq) {
    pgward::v1::StatementEvent event;
    event.set_session_id("s1");
    event.set_statement("SELECT $1");
    event.set_decision("allowed");
    events.emplace_back(seq, event);
  }
  return events;
}

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
  auto dir = std::filesystem::temp_directory_path() / ("pgward-audit-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string db = (dir / "pgward.db").string();
  auto store = pgward::store::Store::Open(db);
  REQUIRE(store.ok());
  pgward::v1::SessionRecord session;
  session.set_session_id("s1");
  session.set_principal("alice");
  session.set_connection("shop");
  session.set_agent("a1");
  REQUIRE((*store)->InsertSession(session).ok());

  Outcomes outcomes;
  {
    pgward::gateway::AuditWriter writer(**store);
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
  auto rows = (*store)->ListAudit(all);
  REQUIRE(rows.ok());
  CHECK(rows->size() == 6);
  std::filesystem::remove_all(dir);
}
