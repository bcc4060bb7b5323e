// The registry of connected agents: see agent_registry.h.
#include "gateway/broker/agent_registry.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/crypto/token_hash.h"
#include "common/util/log.h"
#include "gateway/broker/control_stream.h"

namespace pgward::gateway {
namespace {

int64_t NowUnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::Status AgentRegistry::Register(ControlStream* stream) {
  // The older stream is ended under the lock: its OnDone must Unregister (and wait for this
  // lock) before it can delete itself.
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = streams_.try_emplace(stream->agent(), stream);
  if (inserted || it->second == stream) return absl::OkStatus();
  ControlStream* current = it->second;
  const bool same_process = current->boot_id() == stream->boot_id();
  if (!same_process && !current->Finishing()) {
    Log(LogLevel::kWarn, "agents", "refused a second connection of agent ", stream->agent(), " from ",
        stream->peer(), ": the agent is connected from ", current->peer(),
        " (another process with the same token; if the agent was moved, stop the old process)");
    return absl::AlreadyExistsError(absl::StrCat(
        "agent ", stream->agent(), " is already connected from another process; only one may be connected at a time"));
  }
  it->second = stream;
  Log(LogLevel::kWarn, "agents", "agent ", stream->agent(), " reconnected from ", stream->peer(),
      "; ending its older stream");
  current->End(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer connection of this agent"));
  return absl::OkStatus();
}

bool AgentRegistry::Unregister(ControlStream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(stream->agent());
  if (it == streams_.end() || it->second != stream) return false;
  streams_.erase(it);
  return true;
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

void AgentRegistry::SpoolInto(const std::string& name, pgward::v1::Agent& agent) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(name);
  if (it != streams_.end()) it->second->SpoolInto(agent);
}

bool AgentRegistry::Send(const std::string& agent, pgward::v1::GatewayMessage message) {
  // Held across Send so the stream cannot be deleted underneath: OnDone unregisters first.
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  if (it == streams_.end()) return false;
  return it->second->Send(std::move(message));
}

bool AgentRegistry::SendGrant(const std::string& agent, const store::AgentCredentials& credentials,
                              pgward::v1::GatewayMessage message) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  if (it == streams_.end()) return false;
  if (!credentials.Accepts(it->second->credential(), NowUnixMillis())) {
    Log(LogLevel::kWarn, "agents", "agent ", agent, " from ", it->second->peer(),
        " holds a token that is no longer the agent's; ending its stream instead of sending it a grant");
    it->second->End(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "this agent's token is no longer valid"));
    return false;
  }
  return it->second->Send(std::move(message));
}

bool AgentRegistry::EndIfRotatedOut(const std::string& agent, const store::AgentCredentials& credentials) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  if (it == streams_.end() || credentials.Accepts(it->second->credential(), NowUnixMillis())) return false;
  Log(LogLevel::kWarn, "agents", "agent ", agent, " from ", it->second->peer(),
      " still uses the token it had before its rotation, whose grace period is over; ending its stream");
  it->second->End(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                               "this agent's token was rotated and its grace period is over; restart the agent "
                               "with the new token"));
  return true;
}

std::vector<std::string> AgentRegistry::OnlineAgents() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, stream] : streams_) names.push_back(name);
  return names;
}

void AgentRegistry::End(const std::string& agent, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(agent);
  if (it != streams_.end()) it->second->End(std::move(status));
}

}  // namespace pgward::gateway
