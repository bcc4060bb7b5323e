#include "agent/control/session_manager.h"

#include "common/net/serial_executor.h"
#include "common/util/log.h"

namespace pgward::agent {

void SessionManager::Start(pgward::v1::SessionGrant grant) {
  const std::string id = grant.session_id();
  // One piece of the session's work at a time, on the thread that brings it (SerialExecutor).
  asio::any_io_executor strand = net::SerialExecutor::Make(io_);
  auto session = std::make_shared<AgentSession>(strand, std::move(grant), deps_);
  {
    absl::MutexLock lock(&mu_);
    if (!sessions_.emplace(id, session).second) {
      Log(LogLevel::kWarn, "sessions", "duplicate grant for session ", id, " ignored");
      return;
    }
  }
  asio::co_spawn(strand, session->Run(), [this, id](std::exception_ptr error) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        Log(LogLevel::kError, "sessions", "session ", id, " failed: ", e.what());
      }
    }
    absl::MutexLock lock(&mu_);
    sessions_.erase(id);
  });
}

void SessionManager::Cancel(const std::string& session_id) {
  std::shared_ptr<AgentSession> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it != sessions_.end()) session = it->second;
  }
  if (session) session->Cancel();
}

void SessionManager::End(const std::string& session_id, const std::string& reason) {
  std::shared_ptr<AgentSession> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it != sessions_.end()) session = it->second;
  }
  if (session) session->Stop(reason);
}

bool SessionManager::UpdatePolicy(const std::string& session_id, pgward::v1::Policy policy) {
  std::shared_ptr<AgentSession> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it != sessions_.end()) session = it->second;
  }
  if (!session) return false;
  session->UpdatePolicy(std::move(policy));
  return true;
}

void SessionManager::StopAll(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, session] : sessions_) session->Stop(reason);
}

size_t SessionManager::Count() {
  absl::MutexLock lock(&mu_);
  return sessions_.size();
}

}  // namespace pgward::agent
