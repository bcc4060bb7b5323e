// Sequence-numbers agent events and keeps each one until the gateway acknowledges it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/control/event_spool.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::agent {

// ARCHITECTURE.md: no event is lost. Events stay here until an EventAck covers their seq;
// after a reconnect everything unacknowledged is sent again (the gateway de-duplicates on
// (agent, boot_id, seq)). Sessions append from their strands; the control stream drains.
//
// Bounded by backpressure, not by dropping: at `hard_limit` unacknowledged events the queue
// is Backlogged(), and sessions stop taking the caller's next statements until it drains
// (SessionEventSink::Backlogged). Events of statements already running are still kept, so
// the queue can pass the limit by at most what the live sessions have in flight.
class EventQueue {
 public:
  // `on_append` wakes the control stream's writer; called outside the lock. `soft_limit`:
  // where a warning is logged; `hard_limit` (0: four times the soft limit): see above.
  EventQueue(std::string boot_id, size_t soft_limit, std::function<void()> on_append, size_t hard_limit = 0);

  const std::string& boot_id() const { return boot_id_; }
  // With a spool, every appended event is written to it (under the queue's lock, so in seq
  // order) and acks let it delete; null (the default) keeps events in memory only.
  void SetSpool(EventSpool* spool) { spool_ = spool; }
  EventSpool* spool() const { return spool_; }
  void Append(pgward::v1::AgentEvent event, StatementLink link = {});
  // Earlier boots' unacknowledged events (EventSpool recovery), resent before this boot's.
  void AddEarlierBoots(std::vector<SpooledBoot> boots);
  // What of them is still unacknowledged, in batches of at most `max`, each of one boot.
  std::vector<SpooledBoot> EarlierUnacked(size_t max);
  // An ack naming an earlier boot (EventAck.boot_id is not ours).
  void AckEarlier(const std::string& boot_id, uint64_t seq);
  // Events with seq > after_seq, at most `max` of them, in order.
  std::vector<pgward::v1::AgentEvent> Unsent(uint64_t after_seq, size_t max);
  // How many events have seq > after_seq (what Unsent would return without `max`).
  size_t UnsentCount(uint64_t after_seq);
  void Ack(uint64_t seq);
  uint64_t LastAcked();
  size_t Size();
  // True while at least hard_limit events await acknowledgement.
  bool Backlogged();

 private:
  const std::string boot_id_;
  const size_t soft_limit_;
  const size_t hard_limit_;
  std::function<void()> on_append_;
  absl::Mutex mu_;
  std::deque<pgward::v1::AgentEvent> events_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t last_acked_ ABSL_GUARDED_BY(mu_) = 0;
  bool warned_ ABSL_GUARDED_BY(mu_) = false;
  EventSpool* spool_ = nullptr;
  std::vector<SpooledBoot> earlier_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::agent
