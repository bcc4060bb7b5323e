// Persists agents' statement events on one background thread, then lets the stream ack them.
#pragma once

#include <condition_variable>
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

// SQLite has one writer; doing the writes here keeps gRPC reactions short, and batching
// everything queued into one transaction keeps up with tens of thousands of statements/s.
class AuditWriter {
 public:
  using Done = std::function<void(bool stored)>;
  explicit AuditWriter(store::Store& store);
  ~AuditWriter();

  void Submit(std::string agent, std::string boot_id,
              std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events, Done done);
  // A new control stream (hello) for this agent boot: batches submitted before it are
  // dropped unacknowledged, and a failed write no longer blocks the boot. The agent resends
  // everything unacknowledged on its new stream, in order.
  void StartStream(const std::string& agent, const std::string& boot_id);

 private:
  struct Batch {
    std::string agent;
    std::string boot_id;
    uint64_t generation = 0;
    std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events;
    Done done;
  };
  void Loop();

  store::Store& store_;
  absl::Mutex mu_;
  std::deque<Batch> queue_ ABSL_GUARDED_BY(mu_);
  // Per "agent/boot": the current stream generation, and whether a write failed in it. After
  // a failure nothing later in that generation is stored or acked, so an ack can never cover
  // an event that was not stored.
  struct BootState {
    uint64_t generation = 0;
    bool failed = false;
  };
  absl::flat_hash_map<std::string, BootState> boots_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pgward::gateway
