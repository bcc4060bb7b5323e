// The agent's end of one AgentService.Session stream, awaitable from the session's strand.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/async_signal.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::agent {

// gRPC callback reactor (one read and one write in flight) bridged to asio: each Read/Write
// starts the operation and awaits its completion, which gives end-to-end backpressure: the
// session reads the next chunk only after the previous one was handed to gRPC.
// gRPC may touch a client reactor until OnDone returns, so the reactor deletes itself there
// (as gRPC's examples do) and its owner keeps only the shared signals past that point.
struct StreamSignals {
  explicit StreamSignals(const asio::any_io_executor& executor)
      : read_done(executor), write_done(executor), done(executor) {}
  net::AsyncSignal read_done;
  net::AsyncSignal write_done;
  net::AsyncSignal done;
  grpc::Status status;  // valid once `done` fired

  // Safe from any thread at any time, even after the reactor deleted itself.
  void Cancel() {
    absl::MutexLock lock(&mu);
    if (context != nullptr) context->TryCancel();
  }
  absl::Mutex mu;
  grpc::ClientContext* context ABSL_GUARDED_BY(mu) = nullptr;
};

class SessionStream : public grpc::ClientBidiReactor<pgward::v1::SessionFrame, pgward::v1::SessionFrame> {
 public:
  // Create with new; the object deletes itself in OnDone. Do not touch it after Finished().
  SessionStream(pgward::v1::AgentService::Stub& stub, const asio::any_io_executor& executor,
                const std::string& agent_name, const std::string& agent_token)
      : signals_(std::make_shared<StreamSignals>(executor)) {
    context_.AddMetadata("authorization", "Bearer " + agent_token);
    context_.AddMetadata("x-pgward-agent", agent_name);
    {
      absl::MutexLock lock(&signals_->mu);
      signals_->context = &context_;
    }
    stub.async()->Session(&context_, this);
    // Without a hold gRPC may run OnDone (and we delete ourselves) as soon as the gateway
    // finishes, while the session still reads the last frame; Finished() releases it.
    AddHold();
    StartCall();
  }

  // Valid after Read() returned true, until the next Read().
  pgward::v1::SessionFrame& incoming() { return incoming_; }
  // Fill before Write(); untouchable until Write() returns.
  pgward::v1::SessionFrame& outgoing() { return outgoing_; }

  asio::awaitable<bool> Read() {
    auto signals = signals_;
    StartRead(&incoming_);
    co_return co_await signals->read_done.Wait();
  }
  asio::awaitable<bool> Write() {
    auto signals = signals_;
    StartWrite(&outgoing_);
    co_return co_await signals->write_done.Wait();
  }
  // Half-close: the gateway sees end-of-stream and finishes the call.
  asio::awaitable<bool> CloseWrites() {
    auto signals = signals_;
    StartWritesDone();
    co_return co_await signals->write_done.Wait();
  }
  const std::shared_ptr<StreamSignals>& signals() const { return signals_; }
  // Releases the hold and awaits OnDone; afterwards the object is gone. Call exactly once.
  asio::awaitable<void> Finished() {
    auto signals = signals_;
    RemoveHold();
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
  ~SessionStream() override = default;

  std::shared_ptr<StreamSignals> signals_;
  grpc::ClientContext context_;
  pgward::v1::SessionFrame incoming_;
  pgward::v1::SessionFrame outgoing_;
};

}  // namespace pgward::agent
