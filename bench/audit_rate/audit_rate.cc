// audit_rate: how many statement events per second the gateway's audit path stores. In one
// process: the real Store on a real SQLite file (WAL, as the gateway opens it) in a temporary
// directory, the real AuditWriter, and several producer threads that each play one agent's
// control stream: they submit EventBatches at a target rate, stop reading when Submit says the
// queue is full and go on when the writer resumes them, exactly as ControlStream does. Prints
// one JSON line: events/s stored, whether every event was stored (rows counted afterwards),
// the writer's queue depth (sampled every millisecond), how often Submit pushed back, and CPU
// per event of the writer thread and of the whole process.
//
//   audit_rate [--rate EVENTS_PER_S] [--seconds S] [--producers N] [--batch EVENTS]
//
// Exits 1 if an event was lost or a batch was not acknowledged as stored.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/util/log.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/store/store.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  long rate = 30000;   // events per second, all producers together
  long seconds = 5;
  long producers = 4;  // agents (control streams)
  long batch = 16;     // events per EventBatch (what the agent's 2 ms window gathers at this rate)
};

constexpr int kSessionsPerAgent = 8;

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "audit_rate: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      char* end = nullptr;
      long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v <= 0) {
        std::fprintf(stderr, "audit_rate: %s needs a positive integer\n", arg.c_str());
        std::exit(2);
      }
      return v;
    };
    if (arg == "--rate") options.rate = value();
    else if (arg == "--seconds") options.seconds = value();
    else if (arg == "--producers") options.producers = value();
    else if (arg == "--batch") options.batch = value();
    else {
      std::fprintf(stderr, "usage: audit_rate [--rate EVENTS_PER_S] [--seconds S] [--producers N] [--batch EVENTS]\n");
      std::exit(2);
    }
  }
  return options;
}

std::set<long> ThreadIds() {
  std::set<long> ids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    ids.insert(std::stol(entry.path().filename().string()));
  }
  return ids;
}

// utime + stime of /proc/<path>/stat, in seconds.
double CpuSeconds(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string line;
  std::getline(in, line);
  size_t paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream rest(line.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string SessionId(long agent, int session) {
  return "bench-" + std::to_string(agent) + "-" + std::to_string(session);
}

// What a pgbench -S statement's event looks like (agent/session/statement_events).
pgward::v1::StatementEvent MakeEvent(const std::string& session_id, uint64_t seq) {
  pgward::v1::StatementEvent e;
  e.set_session_id(session_id);
  e.set_time_unix_us(std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count());
  e.set_protocol("extended");
  e.set_statement("SELECT abalance FROM pgbench_accounts WHERE aid = $1");
  e.set_fingerprint("a1b2c3d4e5f60718");
  e.set_command_tag("SELECT 1");
  e.set_rows(1);
  e.set_duration_us(static_cast<int64_t>(40 + seq % 50));
  e.set_decision("allowed");
  e.set_rule("read-only");
  return e;
}

// One agent's control stream: submits at its share of the rate; when the writer's queue is
// full it waits to be resumed, as ControlStream stops reading.
class Producer {
 public:
  Producer(pgward::gateway::AuditWriter& writer, long index, double events_per_s, long batch)
      : writer_(writer), index_(index), events_per_s_(events_per_s), batch_(batch) {}

  void Run(Clock::time_point start, Clock::time_point end) {
    const std::string agent = "agent-" + std::to_string(index_);
    const std::string boot = "boot-" + std::to_string(index_);
    uint64_t seq = 0;
    for (uint64_t sent = 0;;) {
      // Paced on a schedule, not a sleep per batch: a late batch is caught up at once.
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(static_cast<double>(sent) / events_per_s_));
      if (due >= end) break;
      std::this_thread::sleep_until(due);
      pgward::gateway::AgentEvents events;
      for (long i = 0; i < batch_; ++i) {
        ++seq;
        events.statements.emplace_back(seq, MakeEvent(SessionId(index_, static_cast<int>(seq % kSessionsPerAgent)), seq));
      }
      sent += static_cast<uint64_t>(batch_);
      submitted_ += static_cast<uint64_t>(batch_);
      const uint64_t count = static_cast<uint64_t>(batch_);
      auto done = [this, count](bool stored) {
        (stored ? acked_ : failed_) += count;
        std::lock_guard<std::mutex> lock(mu_);
        cv_.notify_all();
      };
      {
        std::lock_guard<std::mutex> lock(mu_);
        paused_ = true;
      }
      auto resume = [this] {
        std::lock_guard<std::mutex> lock(mu_);
        paused_ = false;
        cv_.notify_all();
      };
      if (writer_.Submit(agent, boot, std::move(events), done, resume)) {
        std::lock_guard<std::mutex> lock(mu_);
        paused_ = false;
      } else {
        ++pushed_back_;
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !paused_; });
      }
    }
  }

  // Waits until every submitted event is acknowledged (or failed), up to `limit`.
  bool Drain(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return acked_ + failed_ == submitted_; });
  }

  uint64_t submitted() const { return submitted_; }
  uint64_t acked() const { return acked_; }
  uint64_t failed() const { return failed_; }
  uint64_t pushed_back() const { return pushed_back_; }

 private:
  pgward::gateway::AuditWriter& writer_;
  const long index_;
  const double events_per_s_;
  const long batch_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = false;  // guarded by mu_
  std::atomic<uint64_t> submitted_{0};
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> pushed_back_{0};
};

int64_t CountRows(const std::string& db_path, const char* sql) {
  sqlite3* db = nullptr;
  int64_t count = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
      count = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as the gateway does
  pgward::SetLogLevel(pgward::LogLevel::kWarn);  // the store's migration lines are noise here

  char dir_template[] = "/tmp/audit_rate.XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) {
    std::perror("audit_rate: mkdtemp");
    return 1;
  }
  const std::string db_path = std::string(dir) + "/pgward.db";
  int rc = 0;
  {
    absl::StatusOr<std::unique_ptr<pgward::store::Store>> store = pgward::store::Store::Open(db_path);
    if (!store.ok()) {
      std::fprintf(stderr, "audit_rate: store: %s\n", std::string(store.status().message()).c_str());
      return 1;
    }
    for (long a = 0; a < options.producers; ++a) {
      for (int s = 0; s < kSessionsPerAgent; ++s) {
        pgward::v1::SessionRecord session;
        session.set_session_id(SessionId(a, s));
        session.set_principal("bench-client");
        session.set_connection("bench");
        session.set_agent("agent-" + std::to_string(a));
        session.set_started_unix_ms(1);
        if (absl::Status st = (*store)->InsertSession(session); !st.ok()) {
          std::fprintf(stderr, "audit_rate: session: %s\n", std::string(st.message()).c_str());
          return 1;
        }
      }
    }

    const std::set<long> before = ThreadIds();
    auto writer = std::make_unique<pgward::gateway::AuditWriter>(**store);
    std::string writer_stat;
    for (long id : ThreadIds()) {
      if (!before.contains(id)) writer_stat = "/proc/self/task/" + std::to_string(id) + "/stat";
    }
    std::vector<std::unique_ptr<Producer>> producers;
    for (long a = 0; a < options.producers; ++a) {
      writer->StartStream("agent-" + std::to_string(a), "boot-" + std::to_string(a));
      producers.push_back(std::make_unique<Producer>(
          *writer, a, static_cast<double>(options.rate) / static_cast<double>(options.producers), options.batch));
    }

    const double writer_cpu0 = writer_stat.empty() ? 0 : CpuSeconds(writer_stat);
    const double process_cpu0 = CpuSeconds("/proc/self/stat");
    const auto start = Clock::now() + std::chrono::milliseconds(10);
    const auto end = start + std::chrono::seconds(options.seconds);
    std::vector<std::thread> threads;
    for (auto& p : producers) threads.emplace_back([&p, start, end] { p->Run(start, end); });
    std::vector<size_t> depths;
    std::this_thread::sleep_until(start);
    while (Clock::now() < end) {
      depths.push_back(writer->queued_events());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (auto& t : threads) t.join();
    bool drained = true;
    for (auto& p : producers) drained = p->Drain(std::chrono::seconds(60)) && drained;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double writer_cpu = writer_stat.empty() ? 0 : CpuSeconds(writer_stat) - writer_cpu0;
    const double process_cpu = CpuSeconds("/proc/self/stat") - process_cpu0;
    const uint64_t transactions = writer->transactions();
    writer.reset();

    uint64_t submitted = 0, acked = 0, failed = 0, pushed_back = 0;
    for (auto& p : producers) {
      submitted += p->submitted();
      acked += p->acked();
      failed += p->failed();
      pushed_back += p->pushed_back();
    }
    store->reset();
    const int64_t rows = CountRows(db_path, "SELECT COUNT(*) FROM statement_events");
    const int64_t counted = CountRows(db_path, "SELECT COALESCE(SUM(statements), 0) FROM sessions");
    const bool complete = drained && failed == 0 && acked == submitted && rows == static_cast<int64_t>(submitted) &&
                          counted == static_cast<int64_t>(submitted);
    std::sort(depths.begin(), depths.end());
    const size_t median = depths.empty() ? 0 : depths[depths.size() / 2];
    const size_t max = depths.empty() ? 0 : depths.back();
    const double events = static_cast<double>(rows > 0 ? rows : 0);
    std::printf(
        "{\"rate\": %ld, \"producers\": %ld, \"batch\": %ld, \"seconds\": %.2f, \"submitted\": %llu, "
        "\"stored\": %lld, \"lost\": %lld, \"all_stored\": %s, \"events_per_s\": %.0f, \"queue_median\": %zu, "
        "\"queue_max\": %zu, \"submits\": %llu, \"backpressure\": %llu, \"writer_cpu_us_per_event\": %.2f, "
        "\"process_cpu_us_per_event\": %.2f, \"events_per_transaction\": %.1f}\n",
        options.rate, options.producers, options.batch, elapsed, static_cast<unsigned long long>(submitted),
        static_cast<long long>(rows), static_cast<long long>(submitted) - static_cast<long long>(rows),
        complete ? "true" : "false", events / elapsed, median, max,
        static_cast<unsigned long long>(submitted / static_cast<uint64_t>(options.batch)),
        static_cast<unsigned long long>(pushed_back), events > 0 ? writer_cpu * 1e6 / events : 0.0,
        events > 0 ? process_cpu * 1e6 / events : 0.0,
        transactions > 0 ? events / static_cast<double>(transactions) : 0.0);
    if (!complete) {
      std::fprintf(stderr, "audit_rate: not every event was stored (acked %llu, failed %llu, rows %lld, counted %lld)\n",
                   static_cast<unsigned long long>(acked), static_cast<unsigned long long>(failed),
                   static_cast<long long>(rows), static_cast<long long>(counted));
      rc = 1;
    }
  }
  std::filesystem::remove_all(dir);
  return rc;
}
