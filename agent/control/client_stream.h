// The agent's bidirectional gRPC streams (Control, Session), awaitable from a session's executor.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/async_signal.h"

namespace pgward::agent {

// Completions of one stream, shared by the reactor and its owner; they outlive the reactor.
struct StreamSignals : net::StreamCompletions {
  using net::StreamCompletions::StreamCompletions;
  grpc::Status status;  // valid once `done` fired

  // Call on the owner's executor (where Finished() deletes the reactor): then the context is
  // alive whenever it is set. TryCancel may run reactions inline, so no lock is held around it.
  void Cancel() {
    grpc::ClientContext* current;
    {
      absl::MutexLock lock(&mu);
      current = context;
    }
    if (current != nullptr) current->TryCancel();
  }
  absl::Mutex mu;
  grpc::ClientContext* context ABSL_GUARDED_BY(mu) = nullptr;
};

// gRPC callback reactor (one read and one write in flight) bridged to asio: each Read/Write
// starts the operation and awaits its completion, which gives end-to-end backpressure. The
// reaction resumes the owner's coroutine through its executor: on a SerialExecutor that
// happens inline in the reaction when the session is idle, with no thread hand-off. The call
// carries the agent's credentials as metadata. Create with new; Finished() deletes it on the
// owner's executor after OnDone (a hold keeps OnDone from running before Finished(): without
// it a call the gateway finishes could end while its last frame is still being read).
template <typename Outgoing, typename Incoming>
class ClientStream : public grpc::ClientBidiReactor<Outgoing, Incoming> {
 public:
  using Reactor = grpc::ClientBidiReactor<Outgoing, Incoming>;
  // Binds the reactor to its RPC, e.g. stub.async()->Session(context, reactor).
  using Starter = std::function<void(grpc::ClientContext*, Reactor*)>;

  ClientStream(const Starter& start, const asio::any_io_executor& executor, const std::string& agent_name,
               const std::string& agent_token)
      : signals_(std::make_shared<StreamSignals>(executor)) {
    context_.AddMetadata("authorization", "Bearer " + agent_token);
    context_.AddMetadata("x-pgward-agent", agent_name);
    {
      absl::MutexLock lock(&signals_->mu);
      signals_->context = &context_;
    }
    start(&context_, this);
    this->AddHold();
    this->StartCall();
  }

  const std::shared_ptr<StreamSignals>& signals() const { return signals_; }
  // Valid after Read() returned true, until the next Read().
  Incoming& incoming() { return incoming_; }
  // Fill before Write(); untouchable until Write() returns.
  Outgoing& outgoing() { return outgoing_; }

  asio::awaitable<bool> Read() {
    auto signals = signals_;
    this->StartRead(&incoming_);
    co_return co_await signals->read_done.Wait();
  }
  asio::awaitable<bool> Write() {
    auto signals = signals_;
    this->StartWrite(&outgoing_);
    co_return co_await signals->write_done.Wait();
  }
  // Half-close: the gateway sees end-of-stream and finishes the call.
  asio::awaitable<bool> CloseWrites() {
    auto signals = signals_;
    this->StartWritesDone();
    co_return co_await signals->write_done.Wait();
  }
  // Releases the hold and awaits OnDone; afterwards the object is gone. Call exactly once.
  asio::awaitable<void> Finished() {
    auto signals = signals_;
    this->RemoveHold();
    co_await signals->done.Wait();
    {
      absl::MutexLock lock(&signals->mu);
      signals->context = nullptr;
    }
    delete this;  // after OnDone, as gRPC allows; nothing of `this` is touched afterwards
  }

  void OnReadDone(bool ok) override { signals_->read_done.Post(ok); }
  void OnWriteDone(bool ok) override { signals_->write_done.Post(ok); }
  void OnWritesDoneDone(bool ok) override { signals_->write_done.Post(ok); }
  void OnDone(const grpc::Status& status) override {
    auto signals = signals_;
    signals->status = status;
    // May run Finished() inline, which deletes `this`: the last use of it.
    signals->done.Post(true);
  }

 private:
  ~ClientStream() override = default;

  std::shared_ptr<StreamSignals> signals_;
  grpc::ClientContext context_;
  Incoming incoming_;
  Outgoing outgoing_;
};

}  // namespace pgward::agent
