// The agent's bidirectional gRPC streams (Control, Session), awaitable from a session's executor.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/grpc_driver.h"
#include "common/net/async_signal.h"

namespace pgward::agent {

// Completions of one stream, shared by the stream and its owner; they outlive the stream.
struct StreamSignals : net::StreamCompletions {
  explicit StreamSignals(const asio::any_io_executor& executor) : net::StreamCompletions(executor), started(executor) {}
  net::AsyncSignal started;  // the call started (or could not be)
  grpc::Status status;       // valid once `done` fired

  // Call on the owner's executor (where Finished() deletes the stream): then the context is
  // alive whenever it is set. TryCancel may complete operations, so no lock is held around it.
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

// One bidi call on the completion-queue API (net::GrpcDriver), bridged to asio: each Read/Write
// starts the operation and awaits its completion (one read and one write in flight), which
// gives end-to-end backpressure. The completion resumes the owner's coroutine through its
// executor: on a SerialExecutor that happens inline on the driver's thread when the session is
// idle, with no thread hand-off. The call carries the agent's credentials as metadata. Create
// with new; Finished() deletes it on the owner's executor once every operation has completed.
template <typename Outgoing, typename Incoming>
class ClientStream {
 public:
  using Call = grpc::ClientAsyncReaderWriter<Outgoing, Incoming>;
  // Prepares the call on `cq`, e.g. stub.PrepareAsyncSession(context, cq).
  using Starter = std::function<std::unique_ptr<Call>(grpc::ClientContext*, grpc::CompletionQueue*)>;

  ClientStream(const Starter& start, net::GrpcDriver& driver, const asio::any_io_executor& executor,
               const std::string& agent_name, const std::string& agent_token)
      : signals_(std::make_shared<StreamSignals>(executor)) {
    context_.AddMetadata("authorization", "Bearer " + agent_token);
    context_.AddMetadata("x-pgward-agent", agent_name);
    {
      absl::MutexLock lock(&signals_->mu);
      signals_->context = &context_;
    }
    call_ = start(&context_, driver.cq());
    Begin();
    call_->StartCall(&start_tag_);
  }
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  const std::shared_ptr<StreamSignals>& signals() const { return signals_; }
  // Valid after Read() returned true, until the next Read().
  Incoming& incoming() { return incoming_; }
  // Fill before Write(); untouchable until Write() returns.
  Outgoing& outgoing() { return outgoing_; }

  asio::awaitable<bool> Read() {
    auto signals = signals_;
    if (!co_await Started()) co_return false;
    Begin();
    call_->Read(&incoming_, &read_tag_);
    co_return co_await signals->read_done.Wait();
  }
  asio::awaitable<bool> Write() {
    auto signals = signals_;
    if (!co_await Started()) co_return false;
    Begin();
    call_->Write(outgoing_, &write_tag_);
    co_return co_await signals->write_done.Wait();
  }
  // Half-close: the gateway sees end-of-stream and finishes the call.
  asio::awaitable<bool> CloseWrites() {
    auto signals = signals_;
    if (!co_await Started()) co_return false;
    Begin();
    call_->WritesDone(&write_tag_);
    co_return co_await signals->write_done.Wait();
  }
  // Receives the call's status once the gateway has finished it (or it was cancelled), waits
  // for every operation to complete, and deletes the stream. Call exactly once, with no Read
  // or Write waiting: afterwards the object is gone.
  asio::awaitable<void> Finished() {
    auto signals = signals_;
    co_await Started();
    Begin();
    call_->Finish(&status_, &finish_tag_);
    co_await signals->done.Wait();
    {
      absl::MutexLock lock(&signals->mu);
      signals->context = nullptr;
    }
    delete this;  // every tag has come back: gRPC no longer refers to it
  }

 private:
  enum class Op { kStart, kRead, kWrite, kFinish };
  class Tag final : public net::GrpcTag {
   public:
    Tag(ClientStream* stream, Op op) : stream_(stream), op_(op) {}
    void Done(bool ok) override { stream_->OnDone(op_, ok); }

   private:
    ClientStream* stream_;
    Op op_;
  };

  ~ClientStream() = default;

  void Begin() { outstanding_.fetch_add(1, std::memory_order_relaxed); }

  // On the driver's thread. The signal may resume the owner inline (SerialExecutor), which may
  // start the next operation or, after the finish, delete `this`: nothing of `this` is touched
  // after a Post.
  void OnDone(Op op, bool ok) {
    auto signals = signals_;
    const bool last = outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1;
    switch (op) {
      case Op::kStart:
        signals->started.Post(ok);
        break;
      case Op::kRead:
        signals->read_done.Post(ok);
        break;
      case Op::kWrite:
        signals->write_done.Post(ok);
        break;
      case Op::kFinish:
        signals->status = status_;
        finished_.store(true, std::memory_order_release);
        break;
    }
    // `done` once the finish has come back and nothing else is outstanding, whichever is last.
    if (last && finished_.load(std::memory_order_acquire)) signals->done.Post(true);
  }

  // The first operation waits for StartCall's tag; later ones find it already posted again.
  asio::awaitable<bool> Started() {
    if (start_state_ == StartState::kUnknown) {
      start_state_ = co_await signals_->started.Wait() ? StartState::kStarted : StartState::kFailed;
    }
    co_return start_state_ == StartState::kStarted;
  }

  std::shared_ptr<StreamSignals> signals_;
  grpc::ClientContext context_;
  std::unique_ptr<Call> call_;
  Incoming incoming_;
  Outgoing outgoing_;
  grpc::Status status_;
  Tag start_tag_{this, Op::kStart};
  Tag read_tag_{this, Op::kRead};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  std::atomic<int> outstanding_{0};
  std::atomic<bool> finished_{false};
  enum class StartState { kUnknown, kStarted, kFailed };
  StartState start_state_ = StartState::kUnknown;  // on the owner's executor
};

}  // namespace pgward::agent
