// The gateway's end of one agent's Control stream: hello, heartbeats and events in; grants out.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/net/grpc_server_calls.h"
#include "gateway/broker/agent_service.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::gateway {

class AgentRegistry;
class AuditWriter;
class SessionBroker;
}  // namespace pgward::gateway
namespace pgward::store {
class Store;
}  // namespace pgward::store
namespace pgward::gateway {

// One read and one write in flight; messages from other threads (grants, cancels, acks) wait
// in a bounded queue. Reading pauses while the audit writer is over its queue limits
// (backpressure to the agent). Authentication, hello and heartbeats touch the store and run
// on the store executor, never on the gRPC driver's thread. The reactor deletes itself in
// OnDone after leaving the registry.
class ControlStream : public net::ServerBidiReactor<pgward::v1::AgentMessage, pgward::v1::GatewayMessage> {
 public:
  static constexpr size_t kMaxQueuedMessages = 10000;

  struct Deps {
    AgentServiceImpl* service;
    AgentRegistry* registry;
    AuditWriter* audit;
    SessionBroker* broker;  // told when the agent goes offline (OnDone)
    store::Store* store;
    uint32_t heartbeat_interval_ms;
    asio::any_io_executor store_executor;
  };

  // On the driver's thread, as the call arrives: authenticates it (on the store executor),
  // then reads. The credential kept is the hash of the token the stream authenticated with
  // (crypto::HashToken): grants go only to a stream whose credential is still the agent's
  // (AgentRegistry::SendGrant).
  ControlStream(std::unique_ptr<Call> call, Deps deps);

  const std::string& agent() const { return agent_; }
  const std::string& credential() const { return credential_; }
  const std::string& peer() const { return peer_; }
  // From the agent's Hello; set before the stream registers, constant afterwards.
  const std::string& boot_id() const { return boot_id_; }
  // False when the stream is finishing or its queue is full (the stream is then ended).
  bool Send(pgward::v1::GatewayMessage message);
  // Ends the stream, e.g. because its agent was deleted.
  void End(grpc::Status status);
  // True once End (or a failure) finished the stream.
  bool Finishing();
  uint32_t active_sessions() const { return active_sessions_.load(); }
  // The agent's event spool as its last heartbeat reported it (bytes, bound, full).
  void SpoolInto(pgward::v1::Agent& agent) const {
    agent.set_spool_bytes(spool_bytes_.load());
    agent.set_spool_max_bytes(spool_max_bytes_.load());
    agent.set_spool_full(spool_full_.load());
  }

 private:
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  // The agent went away; with reads paused (audit backpressure) nothing else would notice.
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  void OnDone() override;

  // On the store executor: the token, then the first read.
  // The stream's authentication came back (AgentServiceImpl::AuthenticateOffThread).
  void Authenticated(absl::StatusOr<AuthenticatedAgent> agent);
  // On the store executor, holding the call: hello or heartbeat, then the next read.
  void OnStoreMessage();
  // Each returns false when it ended the stream (no further read then).
  bool OnHello(const pgward::v1::Hello& hello);
  // True while the agent still exists with the token this stream authenticated with.
  bool CredentialCurrent();
  // The least time between two heartbeats that do store work (see OnReadDone).
  std::chrono::steady_clock::duration MinStoreCheckGap() const;
  bool OnHeartbeat(const pgward::v1::Heartbeat& heartbeat);
  // Queues the batch with the audit writer and starts the next read, at once or (when the
  // writer's queue is full) once it has drained.
  void OnEvents(pgward::v1::EventBatch& batch);
  // Starts the read that OnEvents postponed, unless the stream is finishing meanwhile.
  void ResumeReading();
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AgentServiceImpl& service_;
  AgentRegistry& registry_;
  AuditWriter& audit_;
  SessionBroker& broker_;
  store::Store& store_;
  const uint32_t heartbeat_interval_ms_;
  const asio::any_io_executor store_executor_;
  // Set by Authenticated before the first read, constant afterwards.
  std::string agent_;
  std::string credential_;
  std::string peer_;
  std::string boot_id_;  // from Hello; only the read path writes these two
  absl::flat_hash_set<std::string> earlier_boots_;  // resent in this stream (read path only)
  std::string version_;
  bool registered_ = false;
  // When a hello or heartbeat last did its store work (token check, last seen). The read path
  // writes and reads it, one message at a time, like boot_id_.
  std::chrono::steady_clock::time_point last_store_check_;
  std::atomic<uint32_t> active_sessions_{0};
  std::atomic<uint64_t> spool_bytes_{0}, spool_max_bytes_{0};
  std::atomic<bool> spool_full_{false};
  void NoteHeartbeat(const pgward::v1::Heartbeat& heartbeat);
  pgward::v1::AgentMessage incoming_;

  // How the audit writer reaches this stream to resume reading: it may call back after the
  // stream is gone (gRPC server reactors have no holds), so OnDone clears the pointer first.
  struct ReadGate {
    absl::Mutex mu;
    ControlStream* stream ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<ReadGate> read_gate_;

  absl::Mutex mu_;
  std::deque<pgward::v1::GatewayMessage> queue_ ABSL_GUARDED_BY(mu_);
  pgward::v1::GatewayMessage writing_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pgward::gateway
