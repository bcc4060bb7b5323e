#include "agent/control/event_queue.h"

#include <algorithm>

#include "agent/control/event_bounds.h"
#include "common/util/log.h"

namespace pgward::agent {

EventQueue::EventQueue(std::string boot_id, size_t soft_limit, std::function<void()> on_append, size_t hard_limit)
    : boot_id_(std::move(boot_id)),
      soft_limit_(soft_limit),
      hard_limit_(hard_limit != 0 ? hard_limit : soft_limit * 4),
      on_append_(std::move(on_append)) {}

void EventQueue::Append(pgward::v1::AgentEvent event, StatementLink link) {
  // Every event passes here, whoever built it: the one place its strings are bounded.
  BoundEvent(event);
  {
    absl::MutexLock lock(&mu_);
    event.set_seq(next_seq_++);
    // A failed write is logged and fails the spool (new statements are refused); this event
    // is still kept and sent from memory.
    if (spool_ != nullptr) (void)spool_->WriteEvent(event, link);
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
  {
    absl::MutexLock lock(&mu_);
    while (!events_.empty() && events_.front().seq() <= seq) events_.pop_front();
    if (seq > last_acked_) last_acked_ = seq;
    if (events_.size() <= soft_limit_) warned_ = false;
  }
  if (spool_ != nullptr) spool_->Acked(boot_id_, seq);
}

void EventQueue::AddEarlierBoots(std::vector<SpooledBoot> boots) {
  absl::MutexLock lock(&mu_);
  for (auto& boot : boots) {
    if (!boot.events.empty()) earlier_.push_back(std::move(boot));
  }
}

std::vector<SpooledBoot> EventQueue::EarlierUnacked(size_t max) {
  absl::MutexLock lock(&mu_);
  std::vector<SpooledBoot> out;
  for (const auto& boot : earlier_) {
    for (size_t i = 0; i < boot.events.size(); i += max) {
      SpooledBoot batch;
      batch.boot_id = boot.boot_id;
      const size_t end = std::min(boot.events.size(), i + max);
      batch.events.assign(boot.events.begin() + static_cast<std::ptrdiff_t>(i),
                          boot.events.begin() + static_cast<std::ptrdiff_t>(end));
      out.push_back(std::move(batch));
    }
  }
  return out;
}

void EventQueue::AckEarlier(const std::string& boot_id, uint64_t seq) {
  {
    absl::MutexLock lock(&mu_);
    for (auto it = earlier_.begin(); it != earlier_.end(); ++it) {
      if (it->boot_id != boot_id) continue;
      auto& events = it->events;
      events.erase(events.begin(), std::find_if(events.begin(), events.end(),
                                                [seq](const pgward::v1::AgentEvent& e) { return e.seq() > seq; }));
      if (events.empty()) {
        Log(LogLevel::kInfo, "events", "every spooled event of the earlier boot ", boot_id, " is stored");
        earlier_.erase(it);
      }
      break;
    }
  }
  if (spool_ != nullptr) spool_->Acked(boot_id, seq);
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
