// What AdminService needs from the rest of the gateway: who may administer, and what is live
// right now (agents online, sessions running). The gateway implements these; tests fake them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pgward/v1/admin.pb.h"

namespace pgward::admin {

class AdminAuthorizer {
 public:
  virtual ~AdminAuthorizer() = default;
  // `bearer` is the value after "Bearer " in the authorization metadata (contract section 6).
  // Returns the admin identity for logs and created_by; UNAUTHENTICATED or PERMISSION_DENIED.
  virtual absl::StatusOr<std::string> Authorize(std::string_view bearer) = 0;
};

class LiveDirectory {
 public:
  virtual ~LiveDirectory() = default;
  virtual bool AgentOnline(const std::string& agent) = 0;
  virtual uint32_t ActiveSessions(const std::string& agent) = 0;
  // The online agent's event spool, from its last heartbeat (pgwardctl agent list).
  virtual void SpoolInto(const std::string& name, pgward::v1::Agent& agent) {
    (void)name;
    (void)agent;
  }
  // Ends a live session (the caller sees 57P01). NOT_FOUND if it is not live.
  virtual absl::Status KillSession(const std::string& session_id) = 0;
  // A grant was deleted: live sessions no grant covers any more end (57P01).
  virtual void GrantsChanged() {}
  // A grant was created (it may expire before every other one).
  virtual void GrantAdded() {}
  // A principal or group was revoked (the store has the revocation): its live sessions on
  // every agent end (57P01, naming the revocation). Returns how many it ended.
  virtual uint32_t PrincipalRevoked(const pgward::v1::Revocation& revocation) {
    (void)revocation;
    return 0;
  }
  // An agent was deleted: its streams close at once and its live sessions end (57P01).
  virtual void AgentDeleted(const std::string& agent) { (void)agent; }
  // An agent's token was rotated: if it is connected with a token the store no longer accepts
  // (a rotation without grace), its streams close and its live sessions end (57P01); the end of
  // a grace period is watched.
  virtual void AgentTokenRotated(const std::string& agent) { (void)agent; }
};

}  // namespace pgward::admin
