// An in-process AgentService on 127.0.0.1:0 (insecure) that plays the gateway's side of the
// agent's Session streams for the session tests: it records the frames the agent sends and
// sends the caller's bytes, and can break a stream the way a gateway does.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/net/grpc_driver.h"
#include "common/net/grpc_server_calls.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::agent::testing {

// Served on the completion-queue API with one driver thread, as the real gateway serves it
// (gateway/broker/agent_service.cc); Control is not served. Each Session call that arrives
// becomes a Call the test takes with NextCall(); the call's reactor reads every agent frame
// into it, finishes the call OK once the agent half-closes, and finishes it CANCELLED when it
// is cancelled.
class FakeGateway {
 public:
  class Call;

  FakeGateway();
  ~FakeGateway();
  FakeGateway(const FakeGateway&) = delete;
  FakeGateway& operator=(const FakeGateway&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // The next Session call the agent opened, or null after `timeout`.
  std::shared_ptr<Call> NextCall(absl::Duration timeout);
  // Shuts the server down at once: live calls are cancelled. Idempotent.
  void Shutdown();

 private:
  class Reactor;

  pgward::v1::AgentService::AsyncService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<net::GrpcDriver> driver_;
  bool shut_down_ = false;  // test thread only
  absl::Mutex mu_;
  std::deque<std::shared_ptr<Call>> arrived_ ABSL_GUARDED_BY(mu_);
};

// One Session call as the test sees it. Outlives its reactor.
class FakeGateway::Call {
 public:
  // The next frame the agent sent; nullopt when none came within `timeout` or the agent's
  // side of the stream has ended and every frame was taken.
  std::optional<pgward::v1::SessionFrame> NextFrame(absl::Duration timeout);
  // Sends one frame carrying `bytes`, as the gateway relays a caller's bytes (queued behind a
  // write in flight). Ignored once the call is finishing.
  void Send(std::string bytes);
  // Breaks the stream from the gateway's side (TryCancel), as a gateway that lost its caller
  // or went away would.
  void Cancel();
  // True once the agent half-closed its side (every frame arrived).
  bool WaitForAgentDone(absl::Duration timeout);
  // True once the call is over on the server (its reactor is gone).
  bool WaitForEnd(absl::Duration timeout);
  // Metadata the agent sent with the call ("authorization", "x-pgward-agent").
  std::string metadata(const std::string& key);

 private:
  friend class FakeGateway::Reactor;
  void StartNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;  // null once the reactor is deleted
  std::deque<pgward::v1::SessionFrame> received_ ABSL_GUARDED_BY(mu_);
  std::deque<pgward::v1::SessionFrame> to_send_ ABSL_GUARDED_BY(mu_);
  pgward::v1::SessionFrame writing_ ABSL_GUARDED_BY(mu_);  // the frame of the write in flight
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool agent_done_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::multimap<std::string, std::string> metadata_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::agent::testing
