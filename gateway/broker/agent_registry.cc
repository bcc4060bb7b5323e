#include "gateway/broker/agent_registry.h"

#include "common/util/log.h"
#include "gateway/broker/control_stream.h"

namespace pgward::gateway {

void AgentRegistry::Register(ControlStream* stream) {
  // The older stream is ended under the lock: its OnDone must Unregister (and wait for this
  // lock) before it can delete itself.
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = streams_.try_emplace(stream->agent(), stream);
  if (inserted || it->second == stream) return;
  ControlStream* replaced = it->second;
  it->second = stream;
  Log(LogLevel::kWarn, "agents", "agent ", stream->agent(), " reconnected; ending its older stream");
  replaced->End(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer connection of this agent"));
}

void AgentRegistry::Unregister(ControlStream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(stream->agent());
  if (it != streams_.end() && it->second == stream) streams_.erase(it);
}

bool AgentRegistry::Online(const std::string& agent) {
  absl::MutexLock lock(&mu_);
  return streams_.contains(agent);
}

uint32_t AgentRegistry::ActiveSessions(const std::string& agent) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  return it == streams_.end() ? 0 : it->second->active_sessions();
}

bool AgentRegistry::Send(const std::string& agent, pgward::v1::GatewayMessage message) {
  // Held across Send so the stream cannot be deleted underneath: OnDone unregisters first.
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  if (it == streams_.end()) return false;
  return it->second->Send(std::move(message));
}

}  // namespace pgward::gateway

namespace pgward::gateway {

void AgentRegistry::End(const std::string& agent, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  if (it != streams_.end()) it->second->End(std::move(status));
}

}  // namespace pgward::gateway
