// Caps on live sessions: per principal on a connection, and per connection. Admission counts
// and checks in one step, so concurrent logins can never let one more session through.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "pgward/v1/types.pb.h"

namespace pgward::gateway {

struct SessionCaps {
  uint32_t per_principal = 20;    // --max-sessions-per-principal: a grant's max_sessions overrides it
  uint32_t per_connection = 100;  // --max-sessions-per-connection: all principals together
};

// The cap for one principal on one connection given its matching grants: the most permissive
// of them (as for policies, EffectivePolicy), where a grant without max_sessions stands for
// the gateway's default. `from_grant` says whether a grant's own limit decided it.
struct PrincipalCap {
  uint32_t limit = 0;
  bool from_grant = false;
};
PrincipalCap PrincipalSessionCap(const std::vector<pgward::v1::Grant>& grants, uint32_t default_per_principal);

class SessionAdmission {
 public:
  // A counted place for one session; gives the place back when released or destroyed.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = std::move(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { Release(); }
    void Release();

   private:
    friend class SessionAdmission;
    SessionAdmission* owner_ = nullptr;
    std::string principal_key_;
    std::string connection_;
  };

  // Admits one more session of (issuer, principal) on `connection`, or RESOURCE_EXHAUSTED
  // with the message the caller sees (FATAL 53300): which limit was hit and what to do.
  absl::StatusOr<Ticket> Admit(const std::string& issuer, const std::string& principal,
                               const std::string& connection, PrincipalCap principal_cap,
                               uint32_t connection_cap);
  uint32_t PrincipalCount(const std::string& issuer, const std::string& principal, const std::string& connection);
  uint32_t ConnectionCount(const std::string& connection);

 private:
  void Release(const std::string& principal_key, const std::string& connection);

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, uint32_t> per_principal_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint32_t> per_connection_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::gateway
