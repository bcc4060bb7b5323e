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

 private:
  struct Batch {
    std::string agent;
    std::string boot_id;
    std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events;
    Done done;
  };
  void Loop();

  store::Store& store_;
  absl::Mutex mu_;
  std::deque<Batch> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pgward::gateway
