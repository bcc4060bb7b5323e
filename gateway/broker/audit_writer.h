// Persists agents' statement events on one background thread, then lets the stream ack them.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "gateway/store/store.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::gateway {

// One EventBatch of one agent, split by kind.
struct AgentEvents {
  std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> statements;
  std::vector<std::pair<uint64_t, pgward::v1::SessionEnded>> session_ends;
};

// How much may wait for the store. Past either bound the agents' streams stop being read
// (Submit returns false), so HTTP/2 flow control holds events in the agents, which keep them
// until acked: nothing is dropped, and gateway memory stays bounded by these limits plus one
// batch per agent stream.
struct AuditQueueLimits {
  size_t max_events = 50000;
  size_t max_bytes = size_t{64} << 20;
};

// Most events one transaction takes: the store's lock is held for the whole transaction, and
// session admission (InsertSession) waits behind it. 4,096 events take ~30 ms here (bench/
// audit_rate: ~7-8 us per event in large transactions); a larger backlog takes several.
inline constexpr size_t kMaxEventsPerTransaction = 4096;

// SQLite has one writer; doing the writes here keeps gRPC reactions short. Each wake-up takes
// everything queued (several batches, of several agents) and stores it in ONE transaction, so
// the cost of a commit is shared by every statement it carries: tens of thousands of events
// per second on one core.
class AuditWriter {
 public:
  using Done = std::function<void(bool stored)>;
  explicit AuditWriter(store::Store& store, AuditQueueLimits limits = {});
  ~AuditWriter();

  // Queues one batch; `done` runs on the writer thread once it is handled (after the
  // transaction that holds it, in submission order): true when every
  // event is stored, already stored, or refused because it names a session the gateway did not
  // broker to `agent` (refusals are logged and counted, and acked so the agent moves on);
  // false when the store failed (then nothing is acked). Returns true when the caller may read
  // its next batch now; false when the queue is over its limits: `resume` then runs on the
  // writer thread once the queue has drained to half of them.
  bool Submit(std::string agent, std::string boot_id, AgentEvents events, Done done,
              std::function<void()> resume = nullptr);
  // A new control stream (hello) for this agent boot: batches submitted before it are
  // dropped unacknowledged, and a failed write no longer blocks the boot. The agent resends
  // everything unacknowledged on its new stream, in order.
  void StartStream(const std::string& agent, const std::string& boot_id);

  // Events refused since start because they named another agent's (or no) session.
  uint64_t refused_events() const { return refused_total_.load(); }
  // Store transactions committed since start: events per transaction shows the batching.
  uint64_t transactions() const { return transactions_.load(); }
  // What waits for the store right now.
  size_t queued_events();
  size_t queued_bytes();
  // Agent boots whose state the writer holds (batches in flight, or a failed write not yet
  // followed by a reconnect); for tests.
  size_t tracked_boots();

 private:
  struct Batch {
    store::Store::AgentBatch events;
    std::string boot_key;  // "agent/boot_id", the key of boots_
    uint64_t generation = 0;
    size_t event_count = 0;
    size_t bytes = 0;
    Done done;
    bool stored = false;
  };
  void Loop();
  // Stores `work` (one wake-up's batches, in queue order) and sets each one's `stored`: one
  // transaction for all of them; if it fails, each batch alone, so that only the batches the
  // store really cannot take go unacked. A batch is not written if its boot's stream is
  // stale or failed (`skip`), nor after an earlier batch of its boot failed in this round.
  void WriteAll(std::vector<Batch>& work, const std::vector<bool>& skip);
  // Logs and counts events refused for naming sessions that are not the agent's.
  void RecordRefused(const std::string& agent, const std::vector<std::pair<uint64_t, std::string>>& refused);
  bool OverLimitsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  store::Store& store_;
  const AuditQueueLimits limits_;
  std::atomic<uint64_t> refused_total_{0};
  std::atomic<uint64_t> transactions_{0};
  absl::Mutex mu_;
  std::deque<Batch> queue_ ABSL_GUARDED_BY(mu_);
  // Queued plus being written: what the writer holds in memory.
  size_t queued_events_ ABSL_GUARDED_BY(mu_) = 0;
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::function<void()>> paused_readers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> refused_by_agent_ ABSL_GUARDED_BY(mu_);
  // Per "agent/boot": the current stream generation, and whether a write failed in it. After
  // a failure nothing later in that generation is stored or acked, so an ack can never cover
  // an event that was not stored.
  // The state is dropped when neither is left: a boot without state is fresh.
  struct BootState {
    uint64_t generation = 0;  // from generations_, so a dropped and re-made state never repeats one
    size_t in_flight = 0;     // its batches queued or being written
    bool failed = false;
  };
  absl::flat_hash_map<std::string, BootState> boots_ ABSL_GUARDED_BY(mu_);
  uint64_t generations_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pgward::gateway
