// One agent's Control stream on the gateway: see control_stream.h.
#include "gateway/broker/control_stream.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/crypto/token_hash.h"
#include "common/util/log.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/agent_service.h"
#include "gateway/broker/audit_writer.h"
#include "gateway/broker/event_bounds.h"
#include "gateway/broker/session_broker.h"
#include "gateway/store/store.h"

namespace pgward::gateway {
namespace {
// Distinct earlier boots one control stream may resend events of (EventBatch.boot_id).
constexpr size_t kMaxEarlierBootsPerStream = 4096;

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ControlStream::ControlStream(std::unique_ptr<Call> call, Deps deps)
    : ServerBidiReactor(std::move(call)),
      service_(*deps.service),
      registry_(*deps.registry),
      audit_(*deps.audit),
      broker_(*deps.broker),
      store_(*deps.store),
      heartbeat_interval_ms_(deps.heartbeat_interval_ms),
      store_executor_(std::move(deps.store_executor)),
      read_gate_(std::make_shared<ReadGate>()) {
  {
    absl::MutexLock lock(&read_gate_->mu);
    read_gate_->stream = this;
  }
  AddHold();
  service_.AuthenticateOffThread(context(), [this](absl::StatusOr<AuthenticatedAgent> agent) {
    Authenticated(std::move(agent));
    RemoveHold();
  });
}

void ControlStream::Authenticated(absl::StatusOr<AuthenticatedAgent> agent) {
  if (!agent.ok()) {
    End(grpc::Status(static_cast<grpc::StatusCode>(agent.status().code()), std::string(agent.status().message())));
    return;
  }
  agent_ = std::move(agent->name);
  credential_ = std::move(agent->credential);
  peer_ = context().peer();
  StartRead(&incoming_);
}

void ControlStream::ResumeReading() {
  // Under mu_: Finish cannot happen meanwhile, so the read starts on a live call, and gRPC
  // delays OnDone until it completes. A finishing stream needs no more reads.
  absl::MutexLock lock(&mu_);
  if (!finished_) StartRead(&incoming_);
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

bool ControlStream::Finishing() {
  absl::MutexLock lock(&mu_);
  return finished_;
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

bool ControlStream::OnHello(const pgward::v1::Hello& hello) {
  if (registered_) {
    End(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "hello sent twice on one stream"));
    return false;
  }
  if (hello.agent_name() != agent_) {
    Log(LogLevel::kWarn, "agents", "agent ", agent_, " from ", peer_, " sent a hello naming another agent; refused");
    End(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "hello names a different agent"));
    return false;
  }
  if (hello.boot_id().empty() || hello.boot_id().size() > kMaxShortFieldBytes) {
    End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "hello needs a boot id of at most 256 bytes"));
    return false;
  }
  // The token was checked when the stream opened; the agent may have been deleted (or
  // re-created with a new token) since.
  if (!CredentialCurrent()) {
    End(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "this agent's token is no longer valid"));
    return false;
  }
  boot_id_ = hello.boot_id();
  version_ = hello.version();
  TruncateUtf8(version_, kMaxShortFieldBytes);
  // One process per agent: a second one presenting the same name and token is refused while
  // the first is connected (a stolen token must not take the agent's sessions over).
  if (absl::Status registered = registry_.Register(this); !registered.ok()) {
    End(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, std::string(registered.message())));
    return false;
  }
  registered_ = true;
  audit_.StartStream(agent_, boot_id_);
  (void)store_.TouchAgent(agent_, NowMillis(), version_, peer_);
  last_store_check_ = std::chrono::steady_clock::now();
  Log(LogLevel::kInfo, "agents", "agent ", agent_, " online from ", peer_, " (version ", version_, ")");
  pgward::v1::GatewayMessage welcome;
  welcome.mutable_welcome()->set_heartbeat_interval_ms(heartbeat_interval_ms_);
  Send(std::move(welcome));
  return true;
}

bool ControlStream::CredentialCurrent() {
  absl::StatusOr<store::AgentCredentials> current = store_.GetAgentCredentials(agent_);
  // A store error is not proof of anything: keep the stream, the next heartbeat checks again.
  if (!current.ok() && !absl::IsNotFound(current.status())) return true;
  if (current.ok() && current->Accepts(credential_, NowMillis())) return true;
  Log(LogLevel::kWarn, "agents", "agent ", agent_, " from ", peer_,
      " presented a token that is no longer the agent's (deleted, re-created, or rotated and past its grace "
      "period); ending its stream");
  return false;
}

std::chrono::steady_clock::duration ControlStream::MinStoreCheckGap() const {
  return std::max<std::chrono::steady_clock::duration>(std::chrono::seconds(1),
                                                       std::chrono::milliseconds(heartbeat_interval_ms_ / 2));
}

void ControlStream::NoteHeartbeat(const pgward::v1::Heartbeat& heartbeat) {
  active_sessions_ = heartbeat.active_sessions();
  spool_bytes_ = heartbeat.spool_bytes();
  spool_max_bytes_ = heartbeat.spool_max_bytes();
  if (heartbeat.spool_full() && !spool_full_.load()) {
    Log(LogLevel::kError, "agents", "agent ", agent_, " reports its event spool full (", heartbeat.spool_bytes(),
        " of ", heartbeat.spool_max_bytes(), " bytes): it refuses new statements until its events are stored");
  }
  spool_full_ = heartbeat.spool_full();
}

bool ControlStream::OnHeartbeat(const pgward::v1::Heartbeat& heartbeat) {
  NoteHeartbeat(heartbeat);
  last_store_check_ = std::chrono::steady_clock::now();
  // Deleting an agent ends its stream at once; this catches a stream that raced the delete.
  if (!CredentialCurrent()) {
    End(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "this agent's token is no longer valid"));
    return false;
  }
  (void)store_.TouchAgent(agent_, NowMillis(), version_, peer_);
  return true;
}

void ControlStream::OnEvents(pgward::v1::EventBatch& batch) {
  // A restarted agent resends what an earlier boot of it spooled, under that boot's id.
  std::string boot = boot_id_;
  if (!batch.boot_id().empty() && batch.boot_id() != boot_id_) {
    if (batch.boot_id().size() > kMaxShortFieldBytes) {
      End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "event batch boot_id too long"));
      return;
    }
    boot = batch.boot_id();
    // Like this stream's own boot at Hello: a batch of it an earlier stream failed to store
    // must not keep later ones from being stored.
    if (!earlier_boots_.contains(boot)) {
      // An agent resends its spool's boots one after another, a handful at most; a stream
      // naming thousands is ended (the agent, on reconnecting, goes on where the acks left it).
      if (earlier_boots_.size() >= kMaxEarlierBootsPerStream) {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         absl::StrCat("event batches named more than ", kMaxEarlierBootsPerStream,
                                      " earlier boots in one stream")));
        return;
      }
      earlier_boots_.insert(boot);
      audit_.StartStream(agent_, boot);
    }
  }
  AgentEvents events;
  uint64_t max_seq = 0;
  size_t cut = 0;
  for (auto& event : *batch.mutable_events()) {
    max_seq = std::max<uint64_t>(max_seq, event.seq());
    switch (event.kind_case()) {
      case pgward::v1::AgentEvent::kStatement:
        cut += BoundStatementEvent(*event.mutable_statement()) ? 1 : 0;
        events.statements.emplace_back(event.seq(), std::move(*event.mutable_statement()));
        break;
      case pgward::v1::AgentEvent::kSessionEnded:
        cut += BoundSessionEnded(*event.mutable_session_ended()) ? 1 : 0;
        events.session_ends.emplace_back(event.seq(), std::move(*event.mutable_session_ended()));
        break;
      case pgward::v1::AgentEvent::KIND_NOT_SET:
        break;  // acked with the rest: an empty event carries nothing to keep
    }
  }
  if (cut > 0) {
    Log(LogLevel::kWarn, "agents", "agent ", agent_, " sent ", cut, " event(s) with fields over the bounds; cut to ",
        kMaxStatementBytes, " bytes (statement), ", kMaxErrorBytes, " (error), ", kMaxShortFieldBytes, " (others)");
  }
  // The ack goes through the registry: by the time the write lands this stream may be
  // gone, and a reconnected stream of the same agent (same boot id) should get it.
  AgentRegistry* registry = &registry_;
  auto done = [registry, agent = agent_, boot, max_seq](bool stored) {
    if (!stored) {
      // No ack; end the stream so the agent reconnects and resends.
      registry->End(agent, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                        "the gateway could not store events; resend them"));
      return;
    }
    pgward::v1::GatewayMessage ack;
    ack.mutable_ack()->set_seq(max_seq);
    ack.mutable_ack()->set_boot_id(boot);
    registry->Send(agent, std::move(ack));
  };
  // Over the writer's limits the next read waits until it drained: HTTP/2 flow control then
  // holds the agent's events in the agent, which keeps them until they are acked.
  const bool read_on =
      audit_.Submit(agent_, boot, std::move(events), std::move(done), [gate = read_gate_] {
        absl::MutexLock lock(&gate->mu);
        if (gate->stream != nullptr) gate->stream->ResumeReading();
      });
  if (read_on) {
    StartRead(&incoming_);
  } else {
    Log(LogLevel::kInfo, "agents", "audit queue full; pausing reads from agent ", agent_, " until it drains");
  }
}

void ControlStream::OnReadDone(bool ok) {
  if (!ok) {
    End(grpc::Status::OK);
    return;
  }
  switch (incoming_.msg_case()) {
    case pgward::v1::AgentMessage::kHeartbeat:
      // An agent heartbeats every heartbeat_interval_ms_; one that sends them faster gets no
      // more store work for them than that (at most one check per half interval, and never
      // more than one a second), so it cannot keep the store pool, which callers' logins use,
      // busy. The session count still updates.
      if (registered_ && std::chrono::steady_clock::now() - last_store_check_ < MinStoreCheckGap()) {
        NoteHeartbeat(incoming_.heartbeat());
        StartRead(&incoming_);
        return;
      }
      [[fallthrough]];
    case pgward::v1::AgentMessage::kHello:
      // Both check the agent's token in the store: off the driver's thread, which the sessions'
      // relay work shares. The next read starts once it is handled, so messages stay in order.
      AddHold();
      asio::post(store_executor_, [this] {
        OnStoreMessage();
        RemoveHold();
      });
      return;
    case pgward::v1::AgentMessage::kEvents:
      if (!registered_) {
        End(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "events before hello"));
        return;
      }
      OnEvents(*incoming_.mutable_events());
      return;  // OnEvents starts the next read
    case pgward::v1::AgentMessage::MSG_NOT_SET:
      // Fail closed (STYLE.md): a message we do not understand ends the stream.
      Log(LogLevel::kWarn, "agents", "agent ", agent_, " from ", peer_, " sent an unknown control message; ending its stream");
      End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unknown control message"));
      return;
  }
}

void ControlStream::OnStoreMessage() {
  if (incoming_.has_hello()) {
    if (!OnHello(incoming_.hello())) return;
  } else {
    if (!registered_) {
      End(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "heartbeat before hello"));
      return;
    }
    if (!OnHeartbeat(incoming_.heartbeat())) return;
  }
  StartRead(&incoming_);
}

void ControlStream::OnDone() {
  {
    absl::MutexLock lock(&read_gate_->mu);
    read_gate_->stream = nullptr;
  }
  if (registry_.Unregister(this)) {
    Log(LogLevel::kInfo, "agents", "agent ", agent_, " offline");
    // Not when a newer stream of the agent replaced this one: that one may still get the grants.
    broker_.AgentOffline(agent_);
  }
  delete this;
}

}  // namespace pgward::gateway
