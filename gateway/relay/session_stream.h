// The gateway's end of one AgentService.Session stream: paired with a caller, then awaited.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/net/async_signal.h"
#include "common/net/grpc_server_calls.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

class AgentServiceImpl;
class SessionBroker;

// Shared between the reactor (the gRPC driver's thread) and the caller's coroutine (its
// SerialExecutor).
using SessionBridge = net::StreamCompletions;

// Lifecycle: authenticated on the store executor as it arrives; reads the agent's first frame
// (`opened`) and asks the broker to pair it with the waiting caller. Unpaired, it finishes.
// Paired, the caller's coroutine owns it: only it starts reads and writes and calls Finish(),
// and it holds the call (a reactor hold taken in Attach) until it calls Release(), after which
// it touches the stream no more. Either way the stream deletes itself in OnDone, which runs
// once every operation has completed and the owner has let go, and nowhere else: a read that
// completes while the owner still looks at incoming() or writes a frame's data to the caller
// cannot free the frame under it.
class SessionStream : public net::ServerBidiReactor<pgward::v1::SessionFrame, pgward::v1::SessionFrame> {
 public:
  SessionStream(std::unique_ptr<Call> call, AgentServiceImpl& service, SessionBroker& broker);

  // For the broker, pairing it (inside the first read's reaction): the caller's coroutine owns
  // it from now on, until Release().
  void Attach(std::shared_ptr<SessionBridge> bridge);
  // For the owner, after its last operation was started and Finish was called: it lets go.
  // The stream may be deleted before this returns.
  void Release();
  const pgward::v1::SessionFrame& first_frame() const { return first_; }
  pgward::v1::SessionFrame& incoming() { return incoming_; }
  pgward::v1::SessionFrame& outgoing() { return outgoing_; }
  // A read or write refused because the stream is finishing completes at once, failed.
  void StartReading() {
    if (!StartRead(&incoming_)) Bridge()->read_done.Post(false);
  }
  void StartWriting() {
    if (!StartWrite(&outgoing_)) Bridge()->write_done.Post(false);
  }
  void Cancel() { TryCancel(); }
  void FinishOk() { Finish(grpc::Status::OK); }

 private:
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  std::shared_ptr<SessionBridge> Bridge();

  SessionBroker& broker_;
  std::string agent_;  // set before the first read
  absl::Mutex mu_;
  std::shared_ptr<SessionBridge> bridge_ ABSL_GUARDED_BY(mu_);
  bool first_read_ = true;
  pgward::v1::SessionFrame first_;
  pgward::v1::SessionFrame incoming_;
  pgward::v1::SessionFrame outgoing_;
};

}  // namespace pgward::gateway
