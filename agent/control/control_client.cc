#include "agent/control/control_client.h"

#include <asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <random>

#include "common/net/serial_executor.h"
#include "common/util/log.h"

namespace pgward::agent {

using namespace asio::experimental::awaitable_operators;

ControlClient::ControlClient(asio::io_context& io, pgward::v1::AgentService::Stub& stub, net::GrpcDriver& grpc,
                             ControlOptions options, SessionManager& sessions, EventQueue& events)
    : strand_(net::SerialExecutor::Make(io)),
      stub_(stub),
      grpc_(grpc),
      options_(std::move(options)),
      sessions_(sessions),
      events_(events),
      wake_(strand_),
      heartbeat_(options_.heartbeat) {}

std::chrono::milliseconds ControlClient::HeartbeatInterval(uint32_t welcome_ms, std::chrono::milliseconds fallback) {
  if (welcome_ms == 0) return fallback;
  return std::clamp(std::chrono::milliseconds(welcome_ms), std::chrono::milliseconds(1000),
                    std::chrono::milliseconds(60000));
}

asio::awaitable<void> ControlClient::Run() {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.initial_backoff;
  asio::steady_timer timer(strand_);
  for (;;) {
    bool changed = false;
    if (options_.token == nullptr) {
      Log(LogLevel::kError, "control", "no agent token configured");
      co_return;
    }
    if (absl::Status s = options_.token->Reload(&changed); !s.ok()) {
      Log(LogLevel::kError, "control", s.message(), "; connecting with the token read before");
    } else if (changed) {
      Log(LogLevel::kInfo, "control", "the token in --token-file changed; connecting with the new one");
    }
    auto* stream = new Stream(
        [this](grpc::ClientContext* context, grpc::CompletionQueue* cq) { return stub_.PrepareAsyncControl(context, cq); },
        grpc_, strand_, options_.agent_name, options_.token->Get());
    auto signals = stream->signals();
    current_signals_ = signals;
    bool welcomed = co_await Serve(*stream);
    connected_ = false;
    // A stream that failed (the gateway ended it, or the connection broke) keeps its real
    // status, say UNAUTHENTICATED for a deleted agent; a healthy one this side gave up on (an
    // unknown message) is cancelled, so that it ends.
    if (gave_up_) signals->Cancel();
    co_await stream->Finished();  // `stream` is gone now
    if (welcomed) backoff = options_.initial_backoff;
    if (std::exchange(reconnect_now_, false)) {
      Log(LogLevel::kInfo, "control", "reconnecting to the gateway at once (SIGHUP)");
      continue;
    }
    // Full jitter around the current step keeps a fleet of agents from reconnecting in step.
    std::uniform_real_distribution<double> jitter(0.5, 1.5);
    auto delay = std::chrono::milliseconds(static_cast<int64_t>(backoff.count() * jitter(rng)));
    Log(LogLevel::kWarn, "control", "stream to gateway ended (", signals->status.error_message(),
        "); reconnecting in ", delay.count(), " ms");
    backoff = std::min(backoff * 2, options_.max_backoff);
    timer.expires_after(delay);
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

void ControlClient::Reconnect() {
  asio::post(strand_, [this] {
    if (!current_signals_) return;
    reconnect_now_ = true;
    gave_up_ = true;
    current_signals_->Cancel();
  });
}

asio::awaitable<bool> ControlClient::Serve(Stream& stream) {
  broken_ = false;
  gave_up_ = false;
  heartbeat_ = options_.heartbeat;
  auto* hello = stream.outgoing().mutable_hello();
  hello->set_agent_name(options_.agent_name);
  hello->set_version(options_.version);
  hello->set_boot_id(events_.boot_id());
  if (!co_await stream.Write()) co_return false;
  bool welcomed = false;
  co_await (ReadLoop(stream, welcomed) && WriteLoop(stream));
  co_return welcomed;
}

asio::awaitable<void> ControlClient::ReadLoop(Stream& stream, bool& welcomed) {
  // (GCC 12 miscompiles co_await inside a loop condition; keep awaits in statements.)
  for (;;) {
    const bool ok = co_await stream.Read();
    if (!ok) break;
    if (!Dispatch(stream.incoming(), welcomed)) {
      gave_up_ = true;
      break;
    }
  }
  broken_ = true;
  wake_.Post(true);
}

bool ControlClient::Dispatch(const pgward::v1::GatewayMessage& message, bool& welcomed) {
  switch (message.msg_case()) {
    case pgward::v1::GatewayMessage::kWelcome:
      welcomed = true;
      connected_ = true;
      heartbeat_ = HeartbeatInterval(message.welcome().heartbeat_interval_ms(), options_.heartbeat);
      wake_.Post(true);  // the writer re-arms its heartbeat timer
      Log(LogLevel::kInfo, "control", "connected to gateway as agent ", options_.agent_name, " (heartbeat every ",
          heartbeat_.count(), " ms)");
      return true;
    case pgward::v1::GatewayMessage::kSessionGrant:
      Log(LogLevel::kInfo, "control", "session grant ", message.session_grant().session_id(), " for ",
          message.session_grant().principal(), " on ", message.session_grant().connection());
      sessions_.Start(message.session_grant());
      return true;
    case pgward::v1::GatewayMessage::kCancelSession:
      sessions_.Cancel(message.cancel_session().session_id());
      return true;
    case pgward::v1::GatewayMessage::kEndSession: {
      const auto& end = message.end_session();
      Log(LogLevel::kInfo, "control", "gateway ended session ", end.session_id(), " (", end.reason(), "; caller told ",
          end.sqlstate(), " \"", end.message(), "\")");
      sessions_.End(end.session_id(), end.reason().empty() ? std::string("killed") : end.reason());
      return true;
    }
    case pgward::v1::GatewayMessage::kUpdatePolicy: {
      const auto& update = message.update_policy();
      if (!sessions_.UpdatePolicy(update.session_id(), update.policy())) {
        Log(LogLevel::kInfo, "control", "policy update for session ", update.session_id(), " which has ended");
      }
      return true;
    }
    case pgward::v1::GatewayMessage::kAck:
      if (message.ack().boot_id() == events_.boot_id()) {
        events_.Ack(message.ack().seq());
      } else {
        events_.AckEarlier(message.ack().boot_id(), message.ack().seq());  // a resent spooled boot
      }
      return true;
    case pgward::v1::GatewayMessage::MSG_NOT_SET:
      break;
  }
  // Fail closed (STYLE.md): a newer gateway's message this agent cannot act on (an empty
  // oneof, or a field number it does not know) ends the stream; the agent reconnects with
  // backoff, and the count shows in the log.
  const uint64_t count = ++unknown_messages_;
  Log(LogLevel::kError, "control", "unknown message from the gateway (", message.ByteSizeLong(),
      " bytes); ending the control stream (unknown messages so far: ", count, ")");
  return false;
}

asio::awaitable<void> ControlClient::WriteLoop(Stream& stream) {
  // Everything not yet acknowledged goes again after a reconnect.
  uint64_t last_sent = events_.LastAcked();
  asio::steady_timer heartbeat(strand_);
  heartbeat.expires_after(heartbeat_);
  asio::steady_timer batch_timer(strand_);
  EventBatchWindow window(options_.event_batching);
  // 512 events of at most ~22 KiB each (event_bounds.h) stay under the gateway's 16 MiB
  // message limit.
  constexpr size_t kMaxBatch = 512;
  // First what earlier boots spooled and the gateway has not acknowledged (an agent crash).
  for (SpooledBoot& earlier : events_.EarlierUnacked(kMaxBatch)) {
    auto* events = stream.outgoing().mutable_events();
    events->Clear();
    events->set_boot_id(earlier.boot_id);
    for (auto& event : earlier.events) *events->add_events() = std::move(event);
    if (!co_await stream.Write()) break;  // the loop below sees the broken stream
  }
  while (!broken_) {
    // First, so that a steady trickle of held batches never starves the heartbeat (the
    // gateway refreshes the agent's last-seen time and re-checks its token on it).
    if (heartbeat.expiry() <= std::chrono::steady_clock::now()) {
      auto* beat = stream.outgoing().mutable_heartbeat();
      beat->set_sent_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
      beat->set_active_sessions(static_cast<uint32_t>(sessions_.Count()));
      if (EventSpool* spool = events_.spool(); spool != nullptr) {
        const EventSpool::Stats stats = spool->stats();
        beat->set_spool_bytes(stats.bytes);
        beat->set_spool_max_bytes(stats.max_bytes);
        beat->set_spool_full(stats.full);
      }
      if (!co_await stream.Write()) break;
      heartbeat.expires_after(heartbeat_);
      continue;
    }
    const size_t unsent = events_.UnsentCount(last_sent);
    if (unsent > 0) {
      std::optional<EventBatchWindow::Clock::time_point> hold =
          window.HoldUntil(unsent, EventBatchWindow::Clock::now());
      if (hold) {
        // Wait for more events to share this batch; only a full batch wakes the writer early.
        wake_at_queued_.store(events_.Size() + (options_.event_batching.max_events - unsent),
                              std::memory_order_relaxed);
        batch_timer.expires_at(*hold);
        co_await (wake_.Wait() || batch_timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable)));
        wake_at_queued_.store(0, std::memory_order_relaxed);
        continue;
      }
      auto batch = events_.Unsent(last_sent, kMaxBatch);
      auto* events = stream.outgoing().mutable_events();
      events->Clear();
      for (auto& event : batch) *events->add_events() = std::move(event);
      last_sent = events->events(events->events_size() - 1).seq();
      window.Sent();
      if (!co_await stream.Write()) break;
      continue;
    }
    // A Welcome may have shortened the interval since the timer was set.
    if (heartbeat.expiry() > std::chrono::steady_clock::now() + heartbeat_) heartbeat.expires_after(heartbeat_);
    co_await (wake_.Wait() ||
              heartbeat.async_wait(asio::experimental::as_tuple(asio::use_awaitable)));
  }
  wake_at_queued_.store(0, std::memory_order_relaxed);
  // A failed write means a dead call, whose reader fails too; otherwise the reader ended it.
  if (gave_up_) current_signals_->Cancel();
}

}  // namespace pgward::agent
