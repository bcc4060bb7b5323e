// The agent's end of one AgentService.Session stream.
#pragma once

#include "agent/control/client_stream.h"
#include "pgward/v1/agent.grpc.pb.h"

namespace pgward::agent {

using SessionStream = ClientStream<pgward::v1::SessionFrame, pgward::v1::SessionFrame>;

inline SessionStream* OpenSessionStream(pgward::v1::AgentService::Stub& stub, net::GrpcDriver& driver,
                                        const asio::any_io_executor& executor, const std::string& agent_name,
                                        const std::string& agent_token) {
  return new SessionStream(
      [&stub](grpc::ClientContext* context, grpc::CompletionQueue* cq) { return stub.PrepareAsyncSession(context, cq); },
      driver, executor, agent_name, agent_token);
}

}  // namespace pgward::agent
