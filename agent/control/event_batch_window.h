// When the control stream sends the events it has queued: coalesces statements' events into
// one EventBatch over a short, bounded window.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace pgward::agent {

// Each EventBatch costs the gateway a control-stream read, a store transaction and an ack, and
// the agent a gRPC write and the ack's read: sent alone at one client, an event cost the
// gateway ~120 us, a fifth of the whole statement (bench/NOTES.md). So the writer holds the
// first unsent event for up to `window`, or until `max_events` are unsent, and sends them
// together. Statements never wait on this (events are asynchronous to the relay); the audit
// row lands up to `window` later, and acks come that much later, so that many more events sit
// unacknowledged (EventQueue's backpressure bound is unchanged and still applies).
struct EventBatching {
  // 2 ms: at one client (a statement every ~150-600 us through the relay) several statements
  // share a batch; under load the count bound fills first. It stays far below anything a
  // person or a test reading the audit would notice, and far below the heartbeat (10 s).
  std::chrono::microseconds window{2000};
  // 256: ~4 ms of traffic at 60,000 events/s, and half of what one EventBatch may carry
  // (ControlClient sends at most 512, which fits the gateway's message limit).
  size_t max_events = 256;
};

// The writer's decision, as a pure function of what is unsent and the clock (tested alone).
class EventBatchWindow {
 public:
  using Clock = std::chrono::steady_clock;
  explicit EventBatchWindow(EventBatching batching) : batching_(batching) {}

  // `unsent` events wait at `now`. nullopt: send them now (the count bound is reached, the
  // window is over, or batching is off); otherwise the time at which to send them anyway.
  std::optional<Clock::time_point> HoldUntil(size_t unsent, Clock::time_point now) {
    if (unsent == 0) {
      opened_.reset();
      return std::nullopt;
    }
    if (unsent >= batching_.max_events || batching_.window.count() <= 0) return std::nullopt;
    if (!opened_) opened_ = now;  // the window opens when the writer first sees an event
    const Clock::time_point close = *opened_ + batching_.window;
    if (now >= close) return std::nullopt;
    return close;
  }
  // The unsent events went out: the next event opens a new window.
  void Sent() { opened_.reset(); }
  const EventBatching& batching() const { return batching_; }

 private:
  EventBatching batching_;
  std::optional<Clock::time_point> opened_;
};

}  // namespace pgward::agent
