// When the control stream sends queued events: after a bounded window or a full batch.
#include <catch2/catch.hpp>

#include "agent/control/event_batch_window.h"
#include "agent/control/event_queue.h"

using pgward::agent::EventBatching;
using pgward::agent::EventBatchWindow;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {
const EventBatchWindow::Clock::time_point t0{milliseconds(1'000'000)};

EventBatchWindow Window(microseconds window = milliseconds(2), size_t max_events = 256) {
  EventBatching batching;
  batching.window = window;
  batching.max_events = max_events;
  return EventBatchWindow(batching);
}
}  // namespace

TEST_CASE("the first unsent event waits at most the window, however many follow", "[events][batching]") {
  EventBatchWindow window = Window();
  auto hold = window.HoldUntil(1, t0);
  REQUIRE(hold.has_value());
  CHECK(*hold == t0 + milliseconds(2));
  // More events later in the window do not extend it.
  hold = window.HoldUntil(5, t0 + milliseconds(1));
  REQUIRE(hold.has_value());
  CHECK(*hold == t0 + milliseconds(2));
  CHECK_FALSE(window.HoldUntil(5, t0 + milliseconds(2)).has_value());
  CHECK_FALSE(window.HoldUntil(5, t0 + milliseconds(7)).has_value());
}

TEST_CASE("a full batch goes at once", "[events][batching]") {
  EventBatchWindow window = Window(milliseconds(2), 4);
  CHECK(window.HoldUntil(3, t0).has_value());
  CHECK_FALSE(window.HoldUntil(4, t0 + microseconds(10)).has_value());
  CHECK_FALSE(window.HoldUntil(600, t0 + microseconds(20)).has_value());  // a resend backlog too
}

TEST_CASE("a zero window sends every event at once", "[events][batching]") {
  EventBatchWindow window = Window(microseconds(0));
  CHECK_FALSE(window.HoldUntil(1, t0).has_value());
}

TEST_CASE("after a send the next event opens a new window", "[events][batching]") {
  EventBatchWindow window = Window();
  REQUIRE(window.HoldUntil(1, t0).has_value());
  REQUIRE_FALSE(window.HoldUntil(2, t0 + milliseconds(3)).has_value());
  window.Sent();
  auto hold = window.HoldUntil(1, t0 + milliseconds(10));
  REQUIRE(hold.has_value());
  CHECK(*hold == t0 + milliseconds(12));
}

TEST_CASE("nothing unsent closes the window", "[events][batching]") {
  EventBatchWindow window = Window();
  REQUIRE(window.HoldUntil(1, t0).has_value());
  CHECK_FALSE(window.HoldUntil(0, t0 + milliseconds(1)).has_value());  // acked or resent elsewhere
  auto hold = window.HoldUntil(1, t0 + milliseconds(5));
  REQUIRE(hold.has_value());
  CHECK(*hold == t0 + milliseconds(7));
}

TEST_CASE("the unsent count follows sends, acks and a resend from the last ack", "[events][batching]") {
  pgward::agent::EventQueue queue("boot", 100, [] {});
  CHECK(queue.UnsentCount(0) == 0);
  for (int i = 0; i < 6; ++i) {
    pgward::v1::AgentEvent event;
    event.mutable_statement()->set_statement("SELECT " + std::to_string(i));
    queue.Append(std::move(event));
  }
  CHECK(queue.UnsentCount(0) == 6);
  CHECK(queue.UnsentCount(4) == 2);
  CHECK(queue.UnsentCount(6) == 0);
  CHECK(queue.UnsentCount(9) == 0);
  queue.Ack(2);
  CHECK(queue.UnsentCount(queue.LastAcked()) == 4);  // after a reconnect: everything unacked
  CHECK(queue.UnsentCount(5) == 1);
  CHECK(queue.UnsentCount(queue.LastAcked()) == queue.Unsent(queue.LastAcked(), 100).size());
}
