// The agent's bidirectional gRPC streams (Control, Session), awaitable from an asio strand.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/async_signal.h"

namespace pgward::agent {

// Completions of one stream, shared by the reactor and its owner: gRPC may touch a client
// reactor until OnDone returns, so the reactor deletes itself there (as gRPC's examples do)
// and the owner keeps only this.
struct StreamSignals : net::StreamCompletions {
  using net::StreamCompletions::StreamCompletions;
  grpc::Status status;  // valid once `done` fired

  // Safe from any thread at any time, even after the reactor deleted itself.
  void Cancel() {
    absl::MutexLock lock(&mu);
    if (context != nullptr) context->TryCancel();
  }
  absl::Mutex mu;
  grpc::ClientContext* context ABSL_GUARDED_BY(mu) = nullptr;
};

// gRPC callback reactor (one read and one write in flight) bridged to asio: each Read/Write
// starts the operation and awaits its completion, which gives end-to-end backpressure. The
// call carries the agent's credentials as metadata. Create with new; it deletes itself in
// OnDone, which a hold delays until Finished(): without it a call the gateway finishes could
// vanish while its last frame is still being read.
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
  }

  void OnReadDone(bool ok) override { signals_->read_done.Post(ok); }
  void OnWriteDone(bool ok) override { signals_->write_done.Post(ok); }
  void OnWritesDoneDone(bool ok) override { signals_->write_done.Post(ok); }
  void OnDone(const grpc::Status& status) override {
    auto signals = signals_;
    signals->status = status;
    {
      absl::MutexLock lock(&signals->mu);
      signals->context = nullptr;
    }
    delete this;
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
