// Sequencing and retention of agent events until the gateway acknowledges them.
#include <catch2/catch.hpp>

#include "agent/control/event_queue.h"

using pgward::agent::EventQueue;

namespace {
pgward::v1::AgentEvent Statement(const std::string& text) {
  pgward::v1::AgentEvent event;
  event.mutable_statement()->set_statement(text);
  return event;
}
}  // namespace

TEST_CASE("events get increasing sequence numbers and wake the sender", "[events]") {
  int wakes = 0;
  EventQueue queue("boot", 100, [&] { ++wakes; });
  queue.Append(Statement("a"));
  queue.Append(Statement("b"));
  auto unsent = queue.Unsent(0, 10);
  REQUIRE(unsent.size() == 2);
  CHECK(unsent[0].seq() == 1);
  CHECK(unsent[1].seq() == 2);
  CHECK(unsent[1].statement().statement() == "b");
  CHECK(wakes == 2);
}

TEST_CASE("events stay until acknowledged and are resent after a reconnect", "[events]") {
  EventQueue queue("boot", 100, [] {});
  for (int i = 0; i < 5; ++i) queue.Append(Statement(std::to_string(i)));
  // Sent 1..3 on a stream that then broke: nothing was acked, so all five are due again.
  CHECK(queue.Unsent(3, 10).size() == 2);
  CHECK(queue.Unsent(queue.LastAcked(), 10).size() == 5);
  queue.Ack(3);
  CHECK(queue.LastAcked() == 3);
  CHECK(queue.Size() == 2);
  auto due = queue.Unsent(queue.LastAcked(), 10);
  REQUIRE(due.size() == 2);
  CHECK(due[0].seq() == 4);
}

TEST_CASE("batches are capped and never skip an event", "[events]") {
  EventQueue queue("boot", 100, [] {});
  for (int i = 0; i < 7; ++i) queue.Append(Statement(std::to_string(i)));
  auto first = queue.Unsent(0, 3);
  REQUIRE(first.size() == 3);
  auto second = queue.Unsent(first.back().seq(), 3);
  REQUIRE(second.size() == 3);
  CHECK(second.front().seq() == 4);
  auto third = queue.Unsent(second.back().seq(), 3);
  REQUIRE(third.size() == 1);
  CHECK(third.front().seq() == 7);
  CHECK(queue.Unsent(7, 3).empty());
}

TEST_CASE("an ack beyond the queue empties it and a stale ack changes nothing", "[events]") {
  EventQueue queue("boot", 1, [] {});
  queue.Append(Statement("a"));
  queue.Append(Statement("b"));  // over the soft limit: kept, not dropped
  CHECK(queue.Size() == 2);
  queue.Ack(10);
  CHECK(queue.Size() == 0);
  queue.Ack(1);
  CHECK(queue.LastAcked() == 10);
}

TEST_CASE("the queue is backlogged at its hard limit, keeps every event, and recovers once acked", "[events]") {
  EventQueue queue("boot", 2, [] {}, 3);
  queue.Append(Statement("a"));
  queue.Append(Statement("b"));
  CHECK_FALSE(queue.Backlogged());
  queue.Append(Statement("c"));
  CHECK(queue.Backlogged());
  queue.Append(Statement("d"));  // a statement already running still gets its event
  CHECK(queue.Size() == 4);
  queue.Ack(2);
  CHECK_FALSE(queue.Backlogged());
  CHECK(queue.Unsent(2, 10).size() == 2);
}

TEST_CASE("the hard limit defaults to four times the soft limit", "[events]") {
  EventQueue queue("boot", 2, [] {});
  for (int i = 0; i < 7; ++i) queue.Append(Statement("x"));
  CHECK_FALSE(queue.Backlogged());
  queue.Append(Statement("x"));
  CHECK(queue.Backlogged());
}
