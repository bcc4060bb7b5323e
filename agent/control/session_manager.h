// The agent's live sessions: starts one per grant, routes cancels and ends to it.
#pragma once

#include <asio.hpp>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "agent/session/agent_session.h"

namespace pgward::agent {

class SessionManager {
 public:
  SessionManager(asio::io_context& io, SessionDeps deps) : io_(io), deps_(std::move(deps)) {}

  void Start(pgward::v1::SessionGrant grant);
  void Cancel(const std::string& session_id);
  void End(const std::string& session_id, const std::string& reason);
  // False: no such session here (it ended meanwhile).
  bool UpdatePolicy(const std::string& session_id, pgward::v1::Policy policy);
  void StopAll(const std::string& reason);
  size_t Count();

 private:
  asio::io_context& io_;
  SessionDeps deps_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<AgentSession>> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::agent
