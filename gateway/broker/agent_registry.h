// Which agents are connected right now, and the way to send each one a control message.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::gateway {

class ControlStream;

class AgentRegistry {
 public:
  // A newer stream of the same agent replaces the older one, which is ended.
  void Register(ControlStream* stream);
  void Unregister(ControlStream* stream);
  bool Online(const std::string& agent);
  uint32_t ActiveSessions(const std::string& agent);
  // False when the agent is offline or its stream refused the message.
  bool Send(const std::string& agent, pgward::v1::GatewayMessage message);
  // Ends the agent's current stream (it reconnects).
  void End(const std::string& agent, grpc::Status status);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, ControlStream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::gateway
