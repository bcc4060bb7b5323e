#include "agent/control/control_client.h"

#include <asio/experimental/awaitable_operators.hpp>

#include <random>

#include "common/util/log.h"

namespace pgward::agent {

using namespace asio::experimental::awaitable_operators;

ControlClient::ControlClient(asio::io_context& io, pgward::v1::AgentService::Stub& stub,
                             ControlOptions options, SessionManager& sessions, EventQueue& events)
    : strand_(asio::make_strand(io)),
      stub_(stub),
      options_(std::move(options)),
      sessions_(sessions),
      events_(events),
      wake_(strand_) {}

asio::awaitable<void> ControlClient::Run() {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.initial_backoff;
  asio::steady_timer timer(strand_);
  for (;;) {
    auto* stream = new Stream(
        [this](grpc::ClientContext* context, Stream::Reactor* reactor) { stub_.async()->Control(context, reactor); },
        strand_, options_.agent_name, options_.agent_token);
    auto signals = stream->signals();
    current_signals_ = signals;
    bool welcomed = co_await Serve(*stream);
    connected_ = false;
    signals->Cancel();
    co_await stream->Finished();  // `stream` is gone now
    if (welcomed) backoff = options_.initial_backoff;
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

asio::awaitable<bool> ControlClient::Serve(Stream& stream) {
  broken_ = false;
  auto* hello = stream.outgoing().mutable_hello();
  hello->set_agent_name(options_.agent_name);
  hello->set_version(options_.version);
  hello->set_boot_id(events_.boot_id());
  hello->set_oldest_unacked_seq(events_.LastAcked() + 1);
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
    Dispatch(stream.incoming(), welcomed);
  }
  broken_ = true;
  wake_.Post(true);
}

void ControlClient::Dispatch(const pgward::v1::GatewayMessage& message, bool& welcomed) {
  switch (message.msg_case()) {
    case pgward::v1::GatewayMessage::kWelcome:
      welcomed = true;
      connected_ = true;
      Log(LogLevel::kInfo, "control", "connected to gateway as agent ", options_.agent_name);
      break;
    case pgward::v1::GatewayMessage::kSessionGrant:
      Log(LogLevel::kInfo, "control", "session grant ", message.session_grant().session_id(), " for ",
          message.session_grant().principal(), " on ", message.session_grant().connection());
      sessions_.Start(message.session_grant());
      break;
    case pgward::v1::GatewayMessage::kCancelSession:
      sessions_.Cancel(message.cancel_session().session_id());
      break;
    case pgward::v1::GatewayMessage::kEndSession:
      sessions_.End(message.end_session().session_id(), message.end_session().reason());
      break;
    case pgward::v1::GatewayMessage::kAck:
      if (message.ack().boot_id() == events_.boot_id()) events_.Ack(message.ack().seq());
      break;
    default:
      Log(LogLevel::kWarn, "control", "ignoring an unknown message from the gateway");
  }
}

asio::awaitable<void> ControlClient::WriteLoop(Stream& stream) {
  // Everything not yet acknowledged goes again after a reconnect.
  uint64_t last_sent = events_.LastAcked();
  asio::steady_timer heartbeat(strand_);
  heartbeat.expires_after(options_.heartbeat);
  constexpr size_t kMaxBatch = 512;
  while (!broken_) {
    auto batch = events_.Unsent(last_sent, kMaxBatch);
    if (!batch.empty()) {
      auto* events = stream.outgoing().mutable_events();
      events->Clear();
      for (auto& event : batch) *events->add_events() = std::move(event);
      last_sent = events->events(events->events_size() - 1).seq();
      if (!co_await stream.Write()) break;
      continue;
    }
    if (heartbeat.expiry() <= std::chrono::steady_clock::now()) {
      auto* beat = stream.outgoing().mutable_heartbeat();
      beat->set_sent_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count());
      beat->set_active_sessions(static_cast<uint32_t>(sessions_.Count()));
      if (!co_await stream.Write()) break;
      heartbeat.expires_after(options_.heartbeat);
      continue;
    }
    co_await (wake_.Wait() ||
              heartbeat.async_wait(asio::experimental::as_tuple(asio::use_awaitable)));
  }
  current_signals_->Cancel();  // the reader may still wait on a healthy-looking stream
}

}  // namespace pgward::agent
