// The gateway's end of one agent's Control stream: hello, heartbeats and events in; grants out.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

class AgentRegistry;
class AuditWriter;
}  // namespace pgward::gateway
namespace pgward::store {
class Store;
}  // namespace pgward::store
namespace pgward::gateway {

// One read and one write in flight; messages from other threads (grants, cancels, acks) wait
// in a bounded queue. The reactor deletes itself in OnDone after leaving the registry.
class ControlStream : public grpc::ServerBidiReactor<pgward::v1::AgentMessage, pgward::v1::GatewayMessage> {
 public:
  static constexpr size_t kMaxQueuedMessages = 10000;

  ControlStream(grpc::CallbackServerContext* context, std::string agent, std::string peer,
                AgentRegistry& registry, AuditWriter& audit, store::Store& store, uint32_t heartbeat_interval_ms);

  const std::string& agent() const { return agent_; }
  // False when the stream is finishing or its queue is full (the stream is then ended).
  bool Send(pgward::v1::GatewayMessage message);
  // Ends the stream, e.g. because a newer connection of the same agent replaced it.
  void End(grpc::Status status);
  uint32_t active_sessions() const { return active_sessions_.load(); }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  grpc::CallbackServerContext* context_;
  const std::string agent_;
  const std::string peer_;
  AgentRegistry& registry_;
  AuditWriter& audit_;
  store::Store& store_;
  const uint32_t heartbeat_interval_ms_;
  std::string boot_id_;  // from Hello; only the read path touches these two
  std::string version_;
  bool registered_ = false;
  std::atomic<uint32_t> active_sessions_{0};
  pgward::v1::AgentMessage incoming_;

  absl::Mutex mu_;
  std::deque<pgward::v1::GatewayMessage> queue_ ABSL_GUARDED_BY(mu_);
  pgward::v1::GatewayMessage writing_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pgward::gateway
