// Session caps: see session_admission.h.
#include "gateway/broker/session_admission.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pgward::gateway {
namespace {

// NUL cannot occur in an issuer, principal or connection name, so the key is unambiguous.
std::string PrincipalKey(const std::string& issuer, const std::string& principal, const std::string& connection) {
  return absl::StrCat(issuer, std::string(1, '\0'), principal, std::string(1, '\0'), connection);
}

}  // namespace

PrincipalCap PrincipalSessionCap(const std::vector<pgward::v1::Grant>& grants, uint32_t default_per_principal) {
  PrincipalCap cap{default_per_principal, false};
  bool any = false;
  for (const pgward::v1::Grant& grant : grants) {
    const uint32_t own = grant.policy().limits().max_sessions();
    const PrincipalCap candidate = own != 0 ? PrincipalCap{own, true} : PrincipalCap{default_per_principal, false};
    if (!any || candidate.limit > cap.limit) cap = candidate;
    any = true;
  }
  return cap;
}

SessionAdmission::Ticket& SessionAdmission::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    principal_key_ = std::move(other.principal_key_);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

void SessionAdmission::Ticket::Release() {
  if (owner_ == nullptr) return;
  std::exchange(owner_, nullptr)->Release(principal_key_, connection_);
}

absl::StatusOr<SessionAdmission::Ticket> SessionAdmission::Admit(const std::string& issuer,
                                                                const std::string& principal,
                                                                const std::string& connection,
                                                                PrincipalCap principal_cap,
                                                                uint32_t connection_cap) {
  std::string key = PrincipalKey(issuer, principal, connection);
  absl::MutexLock lock(&mu_);
  uint32_t& by_principal = per_principal_[key];
  uint32_t& by_connection = per_connection_[connection];
  if (by_principal >= principal_cap.limit) {
    const uint32_t held = by_principal;
    if (by_principal == 0) per_principal_.erase(key);
    if (by_connection == 0) per_connection_.erase(connection);
    return absl::ResourceExhaustedError(absl::StrCat(
        "principal \"", principal, "\" already has ", held, " session", held == 1 ? "" : "s", " on connection \"",
        connection, "\" (", principal_cap.from_grant ? "the grant's limit" : "the gateway's per-principal limit",
        "); close one or ask for a higher limit"));
  }
  if (by_connection >= connection_cap) {
    const uint32_t held = by_connection;
    if (by_principal == 0) per_principal_.erase(key);
    return absl::ResourceExhaustedError(absl::StrCat("connection \"", connection, "\" already has ", held,
                                                     " sessions (the gateway's per-connection limit); try again later"));
  }
  ++by_principal;
  ++by_connection;
  Ticket ticket;
  ticket.owner_ = this;
  ticket.principal_key_ = std::move(key);
  ticket.connection_ = connection;
  return ticket;
}

void SessionAdmission::Release(const std::string& principal_key, const std::string& connection) {
  absl::MutexLock lock(&mu_);
  if (auto it = per_principal_.find(principal_key); it != per_principal_.end() && --it->second == 0) {
    per_principal_.erase(it);
  }
  if (auto it = per_connection_.find(connection); it != per_connection_.end() && --it->second == 0) {
    per_connection_.erase(it);
  }
}

uint32_t SessionAdmission::PrincipalCount(const std::string& issuer, const std::string& principal,
                                          const std::string& connection) {
  absl::MutexLock lock(&mu_);
  auto it = per_principal_.find(PrincipalKey(issuer, principal, connection));
  return it == per_principal_.end() ? 0 : it->second;
}

uint32_t SessionAdmission::ConnectionCount(const std::string& connection) {
  absl::MutexLock lock(&mu_);
  auto it = per_connection_.find(connection);
  return it == per_connection_.end() ? 0 : it->second;
}

}  // namespace pgward::gateway
