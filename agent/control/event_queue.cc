#include "agent/control/event_queue.h"

#include "agent/control/event_bounds.h"
#include "common/util/log.h"

namespace pgward::agent {

EventQueue::EventQueue(std::string boot_id, size_t soft_limit, std::function<void()> on_append, size_t hard_limit)
    : boot_id_(std::move(boot_id)),
      soft_limit_(soft_limit),
      hard_limit_(hard_limit != 0 ? hard_limit : soft_limit * 4),
      on_append_(std::move(on_append)) {}

void EventQueue::Append(pgward::v1::AgentEvent event) {
  // Every event passes here, whoever built it: the one place its strings are bounded.
  BoundEvent(event);
  {
    absl::MutexLock lock(&mu_);
    event.set_seq(next_seq_++);
    events_.push_back(std::move(event));
    // Never dropped: an unreachable gateway costs memory (bounded by Backlogged's
    // backpressure), not audit rows. Say so once.
    if (events_.size() > soft_limit_ && !warned_) {
      warned_ = true;
      Log(LogLevel::kWarn, "events", events_.size(),
          " events await acknowledgement; is the gateway reachable?");
    }
  }
  on_append_();
}

std::vector<pgward::v1::AgentEvent> EventQueue::Unsent(uint64_t after_seq, size_t max) {
  absl::MutexLock lock(&mu_);
  std::vector<pgward::v1::AgentEvent> out;
  if (events_.empty()) return out;
  uint64_t first = events_.front().seq();
  size_t start = after_seq >= first ? after_seq - first + 1 : 0;
  for (size_t i = start; i < events_.size() && out.size() < max; ++i) out.push_back(events_[i]);
  return out;
}

size_t EventQueue::UnsentCount(uint64_t after_seq) {
  absl::MutexLock lock(&mu_);
  if (events_.empty()) return 0;
  // Sequence numbers in the queue are consecutive.
  const uint64_t first = events_.front().seq();
  const size_t start = after_seq >= first ? after_seq - first + 1 : 0;
  return start < events_.size() ? events_.size() - start : 0;
}

void EventQueue::Ack(uint64_t seq) {
  absl::MutexLock lock(&mu_);
  while (!events_.empty() && events_.front().seq() <= seq) events_.pop_front();
  if (seq > last_acked_) last_acked_ = seq;
  if (events_.size() <= soft_limit_) warned_ = false;
}

uint64_t EventQueue::LastAcked() {
  absl::MutexLock lock(&mu_);
  return last_acked_;
}

size_t EventQueue::Size() {
  absl::MutexLock lock(&mu_);
  return events_.size();
}

bool EventQueue::Backlogged() {
  absl::MutexLock lock(&mu_);
  return events_.size() >= hard_limit_;
}

}  // namespace pgward::agent
