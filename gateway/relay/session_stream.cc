#include "gateway/relay/session_stream.h"

#include "common/util/log.h"
#include "gateway/broker/agent_service.h"
#include "gateway/broker/session_broker.h"

namespace pgward::gateway {

SessionStream::SessionStream(std::unique_ptr<Call> call, AgentServiceImpl& service, SessionBroker& broker)
    : ServerBidiReactor(std::move(call)), broker_(broker) {
  // The agent's token is checked in the store, off the driver's thread; nothing is read first.
  AddHold();
  service.AuthenticateOffThread(context(), [this](absl::StatusOr<AuthenticatedAgent> agent) {
    if (agent.ok()) {
      agent_ = std::move(agent->name);
      StartRead(&first_);
    } else {
      Finish(grpc::Status(static_cast<grpc::StatusCode>(agent.status().code()), std::string(agent.status().message())));
    }
    RemoveHold();
  });
}

void SessionStream::Attach(std::shared_ptr<SessionBridge> bridge) {
  // In OnReadDone of the first read, which is still outstanding: the call cannot end meanwhile.
  AddHold();  // the owner's, given back by Release()
  absl::MutexLock lock(&mu_);
  bridge_ = std::move(bridge);
}

void SessionStream::Release() { RemoveHold(); }

void SessionStream::OnReadDone(bool ok) {
  if (first_read_) {
    first_read_ = false;
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "session stream closed before it opened"));
      return;
    }
    if (!first_.has_opened() || first_.opened().session_id().empty()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first session frame must carry `opened`"));
      return;
    }
    // On success the broker has attached a bridge and the caller drives the stream from now on.
    if (!broker_.PairStream(first_.opened().session_id(), agent_, this)) {
      Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no caller is waiting for this session"));
    }
    return;
  }
  // Outside mu_: Post may run the paired caller's coroutine right here (SerialExecutor).
  if (auto bridge = Bridge()) bridge->read_done.Post(ok);
}

void SessionStream::OnWriteDone(bool ok) {
  if (auto bridge = Bridge()) bridge->write_done.Post(ok);
}

std::shared_ptr<SessionBridge> SessionStream::Bridge() {
  absl::MutexLock lock(&mu_);
  return bridge_;
}

void SessionStream::OnDone() {
  // The one place a SessionStream is deleted, paired or not: every operation has completed
  // and, if it was paired, its owner has let go (Release), so nothing refers into it.
  delete this;
}

}  // namespace pgward::gateway
