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
  absl::MutexLock lock(&mu_);
  bridge_ = std::move(bridge);
}

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
  std::shared_ptr<SessionBridge> bridge = Bridge();
  if (!bridge) {
    delete this;  // never paired: nobody else holds it
    return;
  }
  // Paired: the owner deletes it with Destroy() once `done` fired and it is done with the
  // stream. Not here: the owner's coroutine may still be about to resume from a read that
  // completed (queued behind the session's work) and look at incoming(), or be writing a
  // frame's data to the caller, when the last operation comes back. The owner may run
  // inside this Post: nothing of `this` is touched after it.
  bridge->done.Post(true);
}

}  // namespace pgward::gateway
