#include "gateway/broker/control_stream.h"

#include <chrono>

#include "common/util/log.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/store/store.h"

namespace pgward::gateway {
namespace {
int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ControlStream::ControlStream(grpc::CallbackServerContext* context, std::string agent, std::string peer,
                             AgentRegistry& registry, AuditWriter& audit, store::Store& store,
                             uint32_t heartbeat_interval_ms)
    : context_(context),
      agent_(std::move(agent)),
      peer_(std::move(peer)),
      registry_(registry),
      audit_(audit),
      store_(store),
      heartbeat_interval_ms_(heartbeat_interval_ms) {
  StartRead(&incoming_);
}

bool ControlStream::Send(pgward::v1::GatewayMessage message) {
  absl::MutexLock lock(&mu_);
  if (finished_) return false;
  if (queue_.size() >= kMaxQueuedMessages) {
    Log(LogLevel::kError, "agents", "agent ", agent_, " is not reading its control stream; ending it");
    FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "control stream queue full"));
    return false;
  }
  queue_.push_back(std::move(message));
  if (!write_in_flight_) WriteNextLocked();
  return true;
}

void ControlStream::End(grpc::Status status) {
  absl::MutexLock lock(&mu_);
  FinishLocked(std::move(status));
}

void ControlStream::WriteNextLocked() {
  if (queue_.empty() || finished_) return;
  writing_ = std::move(queue_.front());
  queue_.pop_front();
  write_in_flight_ = true;
  StartWrite(&writing_);
}

void ControlStream::FinishLocked(grpc::Status status) {
  if (finished_) return;
  finished_ = true;
  Finish(std::move(status));
}

void ControlStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write to agent failed"));
    return;
  }
  WriteNextLocked();
}

void ControlStream::OnReadDone(bool ok) {
  if (!ok) {
    End(grpc::Status::OK);
    return;
  }
  switch (incoming_.msg_case()) {
    case pgward::v1::AgentMessage::kHello: {
      const auto& hello = incoming_.hello();
      if (hello.agent_name() != agent_) {
        End(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "hello names a different agent"));
        return;
      }
      boot_id_ = hello.boot_id();
      version_ = hello.version();
      audit_.StartStream(agent_, boot_id_);
      (void)store_.TouchAgent(agent_, NowMillis(), version_, peer_);
      registry_.Register(this);
      registered_ = true;
      Log(LogLevel::kInfo, "agents", "agent ", agent_, " online from ", peer_, " (version ",
          hello.version(), ")");
      pgward::v1::GatewayMessage welcome;
      welcome.mutable_welcome()->set_heartbeat_interval_ms(heartbeat_interval_ms_);
      Send(std::move(welcome));
      break;
    }
    case pgward::v1::AgentMessage::kHeartbeat:
      active_sessions_ = incoming_.heartbeat().active_sessions();
      (void)store_.TouchAgent(agent_, NowMillis(), version_, peer_);
      break;
    case pgward::v1::AgentMessage::kEvents: {
      if (!registered_) {
        End(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "events before hello"));
        return;
      }
      std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> statements;
      uint64_t max_seq = 0;
      for (auto& event : *incoming_.mutable_events()->mutable_events()) {
        max_seq = std::max<uint64_t>(max_seq, event.seq());
        if (event.has_statement()) statements.emplace_back(event.seq(), std::move(*event.mutable_statement()));
      }
      // The ack goes through the registry: by the time the write lands this stream may be
      // gone, and a reconnected stream of the same agent (same boot id) should get it.
      AgentRegistry* registry = &registry_;
      audit_.Submit(agent_, boot_id_, std::move(statements),
                    [registry, agent = agent_, boot = boot_id_, max_seq](bool stored) {
                      pgward::v1::GatewayMessage ack;
                      if (!stored) {
                        // No ack; end the stream so the agent reconnects and resends.
                        registry->End(agent, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                          "the gateway could not store events; resend them"));
                        return;
                      }
                      ack.mutable_ack()->set_seq(max_seq);
                      ack.mutable_ack()->set_boot_id(boot);
                      registry->Send(agent, std::move(ack));
                    });
      break;
    }
    default:
      Log(LogLevel::kWarn, "agents", "agent ", agent_, " sent an unknown control message; ignored");
  }
  StartRead(&incoming_);
}

void ControlStream::OnDone() {
  registry_.Unregister(this);
  if (registered_) Log(LogLevel::kInfo, "agents", "agent ", agent_, " offline");
  delete this;
}

}  // namespace pgward::gateway
