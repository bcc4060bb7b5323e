// The agent's on-disk event spool: what a crash leaves is recovered exactly once.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "agent/control/event_queue.h"
#include "agent/control/event_spool.h"

using pgward::agent::EventQueue;
using pgward::agent::EventSpool;
using pgward::agent::SpoolOptions;
using pgward::agent::SpoolRecovery;
using pgward::agent::StatementLink;

namespace {

struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/pgward-spool-test-XXXXXX";
    path = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

SpoolOptions Options(const TempDir& dir, uint64_t segment_bytes = 4096, uint64_t max_bytes = 1 << 20) {
  SpoolOptions options;
  options.dir = dir.path + "/spool";
  options.segment_bytes = segment_bytes;
  options.max_bytes = max_bytes;
  options.sync_interval = std::chrono::milliseconds(5);
  return options;
}

std::unique_ptr<EventSpool> Open(const SpoolOptions& options, const std::string& boot, SpoolRecovery* recovered) {
  auto spool = EventSpool::Open(options, boot, recovered);
  INFO(spool.status().message());
  REQUIRE(spool.ok());
  return *std::move(spool);
}

pgward::v1::SpoolIntent Intent(uint64_t id, const std::string& text) {
  pgward::v1::SpoolIntent intent;
  intent.set_intent_id(id);
  intent.mutable_statement()->set_statement(text);
  intent.mutable_statement()->set_decision("allowed");
  return intent;
}

pgward::v1::AgentEvent StatementDone(const std::string& session, const std::string& text) {
  pgward::v1::AgentEvent event;
  event.mutable_statement()->set_session_id(session);
  event.mutable_statement()->set_statement(text);
  event.mutable_statement()->set_outcome("ok");
  return event;
}

size_t SegmentFiles(const SpoolOptions& options) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(options.dir)) n += entry.path().extension() == ".seg";
  return n;
}

}  // namespace

TEST_CASE("a crash leaves unacknowledged events to resend and open intents as unknown", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir);
  {
    SpoolRecovery none;
    auto spool = Open(options, "boot-1", &none);
    CHECK(none.segments == 0);
    EventQueue queue("boot-1", 100, [] {});
    queue.SetSpool(spool.get());
    // s1 ran two statements: the first completed, the second was still running at the crash.
    REQUIRE(spool->WriteIntents("s1", {Intent(1, "SELECT 1"), Intent(2, "SELECT pg_sleep(60)")}).ok());
    queue.Append(StatementDone("s1", "SELECT 1"), StatementLink{1, 1});
    // s2: its statement's event was acknowledged by the gateway before the crash.
    REQUIRE(spool->WriteIntents("s2", {Intent(1, "UPDATE t SET x = 1")}).ok());
    queue.Append(StatementDone("s2", "UPDATE t SET x = 1"), StatementLink{1, 1});
    queue.Ack(1);
    // The process dies here: nothing more is written (the destructor only syncs).
  }
  SpoolRecovery recovered;
  auto spool = Open(options, "boot-2", &recovered);
  REQUIRE(recovered.boots.size() == 1);
  CHECK(recovered.boots[0].boot_id == "boot-1");
  // Everything of boot-1 still on disk is sent again (the gateway keeps each (boot, seq) once).
  REQUIRE(recovered.boots[0].events.size() == 2);
  CHECK(recovered.boots[0].events[0].seq() == 1);
  CHECK(recovered.boots[0].events[1].seq() == 2);
  REQUIRE(recovered.unknown.size() == 1);
  CHECK(recovered.unknown[0].first.statement() == "SELECT pg_sleep(60)");
  CHECK(recovered.unknown[0].first.session_id() == "s1");
  CHECK(recovered.unknown[0].first.outcome() == "unknown");
  CHECK(recovered.unknown[0].first.rows() == -1);
  CHECK(recovered.unknown[0].second == 2);
  CHECK(recovered.dropped_bytes == 0);
}

TEST_CASE("recovered unknown statements are reported once, even across a second crash", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir);
  {
    SpoolRecovery none;
    auto spool = Open(options, "boot-1", &none);
    REQUIRE(spool->WriteIntents("s1", {Intent(1, "SELECT 1")}).ok());
  }
  {
    SpoolRecovery recovered;
    auto spool = Open(options, "boot-2", &recovered);
    REQUIRE(recovered.unknown.size() == 1);
    EventQueue queue("boot-2", 100, [] {});
    queue.SetSpool(spool.get());
    pgward::v1::AgentEvent event;
    *event.mutable_statement() = recovered.unknown[0].first;
    queue.Append(std::move(event), StatementLink{recovered.unknown[0].second, 0});
    spool->RecoveryWritten();
    // Crashes again before the gateway acknowledged anything.
  }
  SpoolRecovery again;
  auto spool = Open(options, "boot-3", &again);
  CHECK(again.unknown.empty());  // boot-2 recorded it: not a second unknown row
  REQUIRE(again.boots.size() == 1);
  CHECK(again.boots[0].boot_id == "boot-2");
  REQUIRE(again.boots[0].events.size() == 1);
  CHECK(again.boots[0].events[0].statement().outcome() == "unknown");
}

TEST_CASE("intents settled without an event of their own are not reported", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir);
  {
    SpoolRecovery none;
    auto spool = Open(options, "boot-1", &none);
    // Statement 1 failed; 2 and 3 were skipped by the server (no record), 4 never answered.
    REQUIRE(spool->WriteIntents("s1", {Intent(1, "a"), Intent(2, "b"), Intent(3, "c"), Intent(4, "d")}).ok());
    REQUIRE(spool->WriteSettled("s1", 3).ok());
  }
  SpoolRecovery recovered;
  auto spool = Open(options, "boot-2", &recovered);
  REQUIRE(recovered.unknown.size() == 1);
  CHECK(recovered.unknown[0].first.statement() == "d");
}

TEST_CASE("a torn record at the tail is skipped and the records before it are kept", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir);
  {
    SpoolRecovery none;
    auto spool = Open(options, "boot-1", &none);
    REQUIRE(spool->WriteIntents("s1", {Intent(1, "kept")}).ok());
    REQUIRE(spool->WriteIntents("s1", {Intent(2, "torn")}).ok());
  }
  const std::string segment = options.dir + "/0000000000000001.seg";
  const auto size = std::filesystem::file_size(segment);
  std::filesystem::resize_file(segment, size - 3);  // the crash cut the last write short
  SpoolRecovery recovered;
  auto spool = Open(options, "boot-2", &recovered);
  REQUIRE(recovered.unknown.size() == 1);
  CHECK(recovered.unknown[0].first.statement() == "kept");
  CHECK(recovered.dropped_bytes > 0);

  // A flipped byte fails the checksum the same way.
  TempDir other;
  const SpoolOptions flipped = Options(other);
  {
    SpoolRecovery none;
    auto spool2 = Open(flipped, "boot-1", &none);
    REQUIRE(spool2->WriteIntents("s1", {Intent(1, "kept")}).ok());
    REQUIRE(spool2->WriteIntents("s1", {Intent(2, "corrupt")}).ok());
  }
  const std::string path = flipped.dir + "/0000000000000001.seg";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-2, std::ios::end);
    f.put('\x7f');
  }
  SpoolRecovery r2;
  auto spool3 = Open(flipped, "boot-2", &r2);
  REQUIRE(r2.unknown.size() == 1);
  CHECK(r2.unknown[0].first.statement() == "kept");
}

TEST_CASE("segments are deleted once acknowledged and settled, and a long statement does not pin them",
          "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir, /*segment_bytes=*/2048);
  SpoolRecovery none;
  auto spool = Open(options, "boot-1", &none);
  EventQueue queue("boot-1", 100000, [] {});
  queue.SetSpool(spool.get());
  // A long statement of session "long" stays open throughout.
  REQUIRE(spool->WriteIntents("long", {Intent(1, "SELECT pg_sleep(3600)")}).ok());
  const std::string text(200, 'x');
  uint64_t seq = 0;
  for (uint64_t i = 1; i <= 200; ++i) {
    REQUIRE(spool->WriteIntents("busy", {Intent(i, text)}).ok());
    queue.Append(StatementDone("busy", text), StatementLink{i, i});
    spool->IntentsSettled("busy", {i});
    queue.Ack(++seq);
  }
  // 200 statements of ~500 bytes were written across many 2 KiB segments; all but the
  // newest are gone, the long statement's intent copied forward.
  CHECK(SegmentFiles(options) <= 2);
  CHECK(spool->stats().open_intents == 1);
  CHECK(spool->stats().bytes < 3 * options.segment_bytes);
  spool.reset();
  SpoolRecovery recovered;
  auto reopened = Open(options, "boot-2", &recovered);
  REQUIRE(recovered.unknown.size() == 1);
  CHECK(recovered.unknown[0].first.statement() == "SELECT pg_sleep(3600)");
}

TEST_CASE("a full spool refuses until acknowledgements free it", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir, /*segment_bytes=*/1024, /*max_bytes=*/4096);
  SpoolRecovery none;
  auto spool = Open(options, "boot-1", &none);
  EventQueue queue("boot-1", 100000, [] {});
  queue.SetSpool(spool.get());
  const std::string text(300, 'y');
  uint64_t appended = 0;
  for (int i = 0; i < 100 && !spool->Full(); ++i) {
    queue.Append(StatementDone("s", text));  // the gateway is away: nothing is acknowledged
    ++appended;
  }
  REQUIRE(spool->Full());
  CHECK(spool->stats().full);
  CHECK(spool->stats().bytes >= options.max_bytes);
  // Events of statements already admitted are still written (never dropped).
  queue.Append(StatementDone("s", text));
  ++appended;
  CHECK(queue.Size() == appended);
  queue.Ack(appended);
  CHECK_FALSE(spool->Full());
  CHECK(spool->stats().bytes < options.max_bytes);
}

TEST_CASE("an earlier boot's segments go once its resent events are acknowledged", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir);
  {
    SpoolRecovery none;
    auto spool = Open(options, "boot-1", &none);
    EventQueue queue("boot-1", 100, [] {});
    queue.SetSpool(spool.get());
    for (int i = 0; i < 3; ++i) queue.Append(StatementDone("s", "SELECT 1"));
  }
  SpoolRecovery recovered;
  auto spool = Open(options, "boot-2", &recovered);
  EventQueue queue("boot-2", 100, [] {});
  queue.SetSpool(spool.get());
  queue.AddEarlierBoots(std::move(recovered.boots));
  spool->RecoveryWritten();
  auto batches = queue.EarlierUnacked(2);
  REQUIRE(batches.size() == 2);  // 3 events in batches of at most 2
  CHECK(batches[0].boot_id == "boot-1");
  CHECK(batches[0].events.size() == 2);
  CHECK(batches[1].events.size() == 1);
  CHECK(SegmentFiles(options) == 2);
  queue.AckEarlier("boot-1", 2);
  CHECK(SegmentFiles(options) == 2);  // seq 3 still unacknowledged
  CHECK(queue.EarlierUnacked(10).size() == 1);
  queue.AckEarlier("boot-1", 3);
  CHECK(queue.EarlierUnacked(10).empty());
  CHECK(SegmentFiles(options) == 1);  // only boot-2's own
}

TEST_CASE("a spool bound smaller than two segments is refused", "[spool]") {
  TempDir dir;
  SpoolRecovery none;
  auto spool = EventSpool::Open(Options(dir, 4096, 4096), "boot", &none);
  REQUIRE_FALSE(spool.ok());
  CHECK(std::string(spool.status().message()).find("two segments") != std::string::npos);
}

TEST_CASE("a spool directory in use by another agent is refused, and free again once it closes", "[spool]") {
  TempDir dir;
  const SpoolOptions options = Options(dir);
  SpoolRecovery none;
  auto first = Open(options, "boot-1", &none);
  SpoolRecovery second_recovery;
  auto second = EventSpool::Open(options, "boot-2", &second_recovery);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(second.status().message()).find("its own --data-dir") != std::string::npos);
  first.reset();
  SpoolRecovery third_recovery;
  auto third = Open(options, "boot-3", &third_recovery);
  CHECK(third_recovery.segments == 1);  // boot-1's (empty) segment was left alone by the refused open
}
