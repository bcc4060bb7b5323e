#include "tests/unit/agent/fake_gateway.h"

#include <chrono>
#include <utility>

namespace pgward::agent::testing {
namespace {

using pgward::v1::SessionFrame;

// Under `mu` (held): waits until `done()` or `timeout`; returns done(). AwaitWithTimeout, not a
// CondVar: the TSan build sees absl::Mutex through tests/sanitizers/absl_mutex_tsan.cc, which
// wraps Await and AwaitWithTimeout but no CondVar.
template <typename Done>
bool WaitUntil(absl::Mutex& mu, absl::Duration timeout, Done done) {
  return mu.AwaitWithTimeout(absl::Condition(&done), timeout);
}

}  // namespace

// The server's end of one Session stream: one read always in flight until the agent
// half-closes, writes taken from the Call's queue one at a time.
class FakeGateway::Reactor final : public net::ServerBidiReactor<SessionFrame, SessionFrame> {
 public:
  Reactor(std::unique_ptr<net::ServerBidiCall<SessionFrame, SessionFrame>> call, std::shared_ptr<FakeGateway::Call> state)
      : net::ServerBidiReactor<SessionFrame, SessionFrame>(std::move(call)), state_(std::move(state)) {
    {
      absl::MutexLock lock(&state_->mu_);
      state_->reactor_ = this;
      for (const auto& [key, value] : context().client_metadata()) {
        state_->metadata_.emplace(std::string(key.data(), key.size()), std::string(value.data(), value.size()));
      }
    }
    StartRead(&incoming_);
  }

 protected:
  void OnReadDone(bool ok) override {
    if (ok) {
      {
        absl::MutexLock lock(&state_->mu_);
        state_->received_.push_back(incoming_);
      }
      StartRead(&incoming_);
      return;
    }
    {
      absl::MutexLock lock(&state_->mu_);
      state_->agent_done_ = true;
    }
    Finish(grpc::Status::OK);  // as the gateway does once the agent half-closed
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu_);
    state_->write_in_flight_ = false;
    if (ok) state_->StartNextWrite();
  }
  void OnCancel() override { Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the fake gateway broke the stream")); }
  void OnDone() override {
    {
      absl::MutexLock lock(&state_->mu_);
      state_->reactor_ = nullptr;
      state_->ended_ = true;
    }
    delete this;
  }

 private:
  std::shared_ptr<FakeGateway::Call> state_;
  SessionFrame incoming_;
};

FakeGateway::FakeGateway() {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(&service_);
  auto queue = builder.AddCompletionQueue();
  server_ = builder.BuildAndStart();
  driver_ = std::make_unique<net::GrpcDriver>(std::move(queue));
  net::BidiAcceptor<SessionFrame, SessionFrame>::Start(
      [this](grpc::ServerContext* context, grpc::ServerAsyncReaderWriter<SessionFrame, SessionFrame>* stream,
             grpc::ServerCompletionQueue* queue,
             void* tag) { service_.RequestSession(context, stream, queue, queue, tag); },
      *driver_,
      [this](std::unique_ptr<net::ServerBidiCall<SessionFrame, SessionFrame>> call) {
        auto state = std::make_shared<Call>();
        new Reactor(std::move(call), state);  // deletes itself in OnDone
        absl::MutexLock lock(&mu_);
        arrived_.push_back(std::move(state));
      });
}

FakeGateway::~FakeGateway() {
  Shutdown();
  driver_.reset();  // after the server: its queue drains the acceptor's last request
}

void FakeGateway::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now());
}

std::shared_ptr<FakeGateway::Call> FakeGateway::NextCall(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !arrived_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return nullptr;
  std::shared_ptr<Call> call = std::move(arrived_.front());
  arrived_.pop_front();
  return call;
}

std::optional<SessionFrame> FakeGateway::Call::NextFrame(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  WaitUntil(mu_, timeout, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return !received_.empty() || agent_done_ || ended_;
  });
  if (received_.empty()) return std::nullopt;
  SessionFrame frame = std::move(received_.front());
  received_.pop_front();
  return frame;
}

void FakeGateway::Call::Send(std::string bytes) {
  absl::MutexLock lock(&mu_);
  SessionFrame frame;
  frame.set_data(std::move(bytes));
  to_send_.push_back(std::move(frame));
  StartNextWrite();
}

void FakeGateway::Call::StartNextWrite() {
  if (write_in_flight_ || reactor_ == nullptr || to_send_.empty()) return;
  writing_ = std::move(to_send_.front());
  to_send_.pop_front();
  // Under mu_: OnDone clears reactor_ under it before deleting, and a refused write (the call
  // is finishing) starts nothing.
  write_in_flight_ = reactor_->StartWrite(&writing_);
}

void FakeGateway::Call::Cancel() {
  absl::MutexLock lock(&mu_);
  if (reactor_ != nullptr) reactor_->TryCancel();
}

bool FakeGateway::Call::WaitForAgentDone(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return WaitUntil(mu_, timeout, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return agent_done_; });
}

bool FakeGateway::Call::WaitForEnd(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return WaitUntil(mu_, timeout, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return ended_; });
}

std::string FakeGateway::Call::metadata(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = metadata_.find(key);
  return it == metadata_.end() ? std::string() : it->second;
}

}  // namespace pgward::agent::testing
