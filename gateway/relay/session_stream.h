// The gateway's end of one AgentService.Session stream: paired with a caller, then awaited.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/async_signal.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

class SessionBroker;

// Shared between the reactor (gRPC threads) and the caller's coroutine (its SerialExecutor).
using SessionBridge = net::StreamCompletions;

// Lifecycle: authenticated at creation; reads the agent's first frame (`opened`) and asks the
// broker to pair it with the waiting caller. Unpaired, it finishes and deletes itself. Once
// paired, the caller's coroutine owns it: only it starts reads and writes and calls Finish(),
// and it deletes the reactor with Destroy() after OnDone, when it no longer reads the last
// frame (gRPC may run OnDone as soon as Finish was called and the last read completed).
class SessionStream : public grpc::ServerBidiReactor<pgward::v1::SessionFrame, pgward::v1::SessionFrame> {
 public:
  SessionStream(grpc::CallbackServerContext* context, SessionBroker& broker, std::string agent);

  // For the paired caller's coroutine.
  void Attach(std::shared_ptr<SessionBridge> bridge);
  const pgward::v1::SessionFrame& first_frame() const { return first_; }
  pgward::v1::SessionFrame& incoming() { return incoming_; }
  pgward::v1::SessionFrame& outgoing() { return outgoing_; }
  void StartReading() { StartRead(&incoming_); }
  void StartWriting() { StartWrite(&outgoing_); }
  void Cancel() { context_->TryCancel(); }
  void FinishOk() { Finish(grpc::Status::OK); }
  // For the paired owner, once `done` fired.
  void Destroy() { delete this; }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  std::shared_ptr<SessionBridge> Bridge();

  grpc::CallbackServerContext* context_;
  SessionBroker& broker_;
  const std::string agent_;
  absl::Mutex mu_;
  std::shared_ptr<SessionBridge> bridge_ ABSL_GUARDED_BY(mu_);
  bool first_read_ = true;
  pgward::v1::SessionFrame first_;
  pgward::v1::SessionFrame incoming_;
  pgward::v1::SessionFrame outgoing_;
};

}  // namespace pgward::gateway
