// Which agents are connected right now, and the way to send each one a control message.
#pragma once

#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gateway/store/store.h"
#include "pgward/v1/agent.pb.h"

namespace pgward::gateway {

class ControlStream;

class AgentRegistry {
 public:
  // One stream per agent name. While a stream is connected, another process with the same
  // name and token is refused (ALREADY_EXISTS) and logged; the first keeps working. A stream
  // of the same agent process (same boot id: it lost its connection and the gateway has not
  // noticed yet) replaces the older one, as does any stream once the older one is finishing.
  absl::Status Register(ControlStream* stream);
  // True when `stream` was the agent's current one: the agent is offline now.
  bool Unregister(ControlStream* stream);
  bool Online(const std::string& agent);
  uint32_t ActiveSessions(const std::string& agent);
  // The online agent's spool figures into `agent` (ControlStream::SpoolInto); offline: none.
  void SpoolInto(const std::string& name, pgward::v1::Agent& agent);
  // False when the agent is offline or its stream refused the message.
  bool Send(const std::string& agent, pgward::v1::GatewayMessage message);
  // Like Send, for messages that carry secrets (session grants): only to a stream that
  // authenticated with a token `credentials` accept now. A stream holding another (its agent
  // was deleted and maybe re-created, or its token rotated out) is ended instead.
  bool SendGrant(const std::string& agent, const store::AgentCredentials& credentials,
                 pgward::v1::GatewayMessage message);
  // Ends the agent's stream if it authenticated with a token `credentials` no longer accept
  // (a rotation's grace period ended, or a rotation without one). True if it ended one.
  bool EndIfRotatedOut(const std::string& agent, const store::AgentCredentials& credentials);
  // The agents connected now.
  std::vector<std::string> OnlineAgents();
  // Ends the agent's current stream.
  void End(const std::string& agent, grpc::Status status);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, ControlStream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::gateway
