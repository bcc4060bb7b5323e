// The agent's long-lived control stream to the gateway, re-dialled with capped backoff.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "agent/control/event_batch_window.h"
#include "agent/control/event_queue.h"
#include "agent/control/session_manager.h"
#include "agent/control/agent_token.h"
#include "agent/control/client_stream.h"
#include "common/net/async_signal.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::agent {

struct ControlOptions {
  std::string agent_name;
  AgentToken* token = nullptr;  // required; re-read before each (re)connect
  std::string version;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds heartbeat{10000};
  // How long events may wait to share an EventBatch (EventBatchWindow).
  EventBatching event_batching;
};

// Dials out (the database network needs no inbound port), says Hello, then serves grants,
// cancels, ends and acks while streaming events and heartbeats up.
class ControlClient {
 public:
  ControlClient(asio::io_context& io, pgward::v1::AgentService::Stub& stub, net::GrpcDriver& grpc, ControlOptions options,
                SessionManager& sessions, EventQueue& events);

  // Spawn Run() on executor(): its read and write loops then never run at the same time.
  asio::awaitable<void> Run();
  const asio::any_io_executor& executor() const { return strand_; }
  // Called by EventQueue on every append; cheap and thread-safe. While the writer holds a
  // batch open it only needs waking for a full batch (its timer ends the window), which saves
  // a cross-thread wake-up per statement.
  // Ends the current control stream so the agent reconnects at once, with the token re-read
  // (SIGHUP after a rotation). Safe from any thread.
  void Reconnect();
  void Wake() {
    const size_t wake_at = wake_at_queued_.load(std::memory_order_relaxed);
    if (wake_at != 0 && events_.Size() < wake_at) return;
    wake_.Post(true);
  }
  bool connected() const { return connected_; }
  // Gateway messages this agent did not understand (each ended its stream) since start.
  uint64_t unknown_messages() const { return unknown_messages_.load(); }
  // The heartbeat interval a Welcome asks for, clamped to 1 s..60 s; 0 (unset) gives `fallback`.
  static std::chrono::milliseconds HeartbeatInterval(uint32_t welcome_ms, std::chrono::milliseconds fallback);
  // Acts on one gateway message (public for tests; only the read loop calls it). False for a
  // message this agent does not understand: the stream then ends (fail closed).
  bool Dispatch(const pgward::v1::GatewayMessage& message, bool& welcomed);

 private:
  using Stream = ClientStream<pgward::v1::AgentMessage, pgward::v1::GatewayMessage>;
  asio::awaitable<bool> Serve(Stream& stream);
  asio::awaitable<void> ReadLoop(Stream& stream, bool& welcomed);
  asio::awaitable<void> WriteLoop(Stream& stream);

  // The stream's work runs on the thread that brings it, one piece at a time (SerialExecutor):
  // an event appended by a session starts its write right there, no thread hand-off.
  asio::any_io_executor strand_;
  pgward::v1::AgentService::Stub& stub_;
  net::GrpcDriver& grpc_;
  ControlOptions options_;
  SessionManager& sessions_;
  EventQueue& events_;
  net::AsyncSignal wake_;
  std::shared_ptr<StreamSignals> current_signals_;  // of the stream being served
  bool broken_ = false;
  bool gave_up_ = false;  // this side ended a healthy stream (an unknown message, a reconnect)
  bool reconnect_now_ = false;  // Reconnect(): skip the backoff once
  std::chrono::milliseconds heartbeat_;  // on the strand; the Welcome's, else options_.heartbeat
  std::atomic<bool> connected_{false};
  // While the writer holds a batch: the queue size (unacknowledged events) at which Wake()
  // wakes it early; 0 when every append wakes it.
  std::atomic<size_t> wake_at_queued_{0};
  std::atomic<uint64_t> unknown_messages_{0};
};

}  // namespace pgward::agent
