// Turns an authenticated caller into a live session: grant check, agent hand-off, pairing.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/secret_box.h"
#include "gateway/admin/admin_interfaces.h"
#include "gateway/broker/agent_registry.h"
#include "gateway/broker/session_admission.h"
#include "gateway/relay/session_stream.h"
#include "gateway/identity/verified_token.h"
#include "gateway/store/store.h"

namespace pgward::gateway {

struct CallerInfo {
  std::string client_addr;
  std::string caller_user;
  std::string application_name;
  std::vector<std::pair<std::string, std::string>> startup_parameters;  // already filtered
  // Kept with the live session only when the gateway re-checks tokens (introspection); never
  // logged or stored.
  std::string access_token;
};

// One paired session as the broker, the admin API and cancel routing see it.
class LiveSession : public std::enable_shared_from_this<LiveSession> {
 public:
  std::string session_id, principal, issuer, connection, agent;
  std::vector<std::string> groups;
  std::string subject;       // the token's "sub", which the IdP's revocation events name
  int64_t token_issued_unix = 0;  // the token's "iat" (VerifiedToken::issued_unix)
  std::string access_token;  // CallerInfo::access_token: empty unless tokens are re-checked
  int32_t cancel_pid = 0;
  uint32_t cancel_key = 0;
  pgward::v1::SessionOpened opened;
  SessionStream* stream = nullptr;
  std::shared_ptr<SessionBridge> bridge;
  SessionAdmission::Ticket admission;  // its place under the session caps, given back at Close
  AgentRegistry* agents = nullptr;     // for the EndSession a kill sends to the agent
  // The caller connection's SerialExecutor: the stream is driven, finished and released there,
  // so a kill runs there too and needs no lock around the stream.
  asio::any_io_executor executor;

  // Ends the session from outside (admin kill, grant deleted, token expiry, agent deleted).
  // The first kill sends EndSession to the agent, which cancels what runs upstream and closes
  // the upstream connection at once, and cancels the session stream, so the caller's coroutine
  // sees it fail and tells the caller `message` with SQLSTATE 57P01 even if the agent is slow.
  // Safe from any thread; the work runs on the session's executor.
  void Kill(std::string reason, std::string message);
  // Called by the caller's coroutine just before it finishes the stream.
  void MarkFinished();
  // The kill reason and message, if the session was killed.
  std::pair<std::string, std::string> KillReason();
  // Sets the effective policy the agent enforces for it (at open, and after grant changes);
  // false if it already was `next` (nothing to tell the agent).
  bool ReplacePolicy(const pgward::v1::Policy& next);

 private:
  void KillOnExecutor(std::string reason, std::string message);

  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::string kill_reason_ ABSL_GUARDED_BY(mu_);
  std::string kill_message_ ABSL_GUARDED_BY(mu_);
  pgward::v1::Policy policy_ ABSL_GUARDED_BY(mu_);
};

struct BrokerOptions {
  std::chrono::milliseconds open_timeout{15000};
  SessionCaps caps;
  // The issuer that grants without one belong to (Store::FindGrants): the single trusted
  // issuer, or "" when several are trusted (such grants then match nobody).
  std::string issuerless_grants_issuer;
  // Where the broker uses the store (SQLite): a small pool, never an I/O or gRPC thread, which
  // the session coroutines may be running on (SerialExecutor). Required.
  asio::any_io_executor store_executor;
};

// Error codes of Open() map to the contract's SQLSTATEs: PermissionDenied -> 28000,
// NotFound -> 3D000, ResourceExhausted -> 53300, Unavailable/DeadlineExceeded -> 08006.
class SessionBroker : public admin::LiveDirectory {
 public:
  SessionBroker(store::Store& store, const crypto::SecretBox& secrets, AgentRegistry& agents, BrokerOptions options);

  asio::awaitable<absl::StatusOr<std::shared_ptr<LiveSession>>> Open(const identity::VerifiedToken& token,
                                                                     const std::string& connection,
                                                                     const CallerInfo& caller);
  // From a new Session stream's first frame. False: nobody waits for it (or the wrong agent).
  bool PairStream(const std::string& session_id, const std::string& agent, SessionStream* stream);
  // Gives the session's place under the caps back and records the end.
  asio::awaitable<void> Close(LiveSession& session, const std::string& end_reason);
  // A CancelRequest; forged or stale keys do nothing (and say nothing, as in Postgres).
  void Cancel(int32_t pid, uint32_t key);

  bool AgentOnline(const std::string& agent) override;
  uint32_t ActiveSessions(const std::string& agent) override;
  void SpoolInto(const std::string& name, pgward::v1::Agent& agent) override { agents_.SpoolInto(name, agent); }
  absl::Status KillSession(const std::string& session_id) override;
  // A grant was deleted or updated: live sessions no grant covers end (57P01, grant_deleted);
  // those whose effective policy changed get the new one pushed to their agent (UpdatePolicy).
  void GrantsChanged() override;
  // Asks `active` about the token of every live session that kept one (each distinct token
  // once) and ends those it says are no longer active (57P01, end reason token_revoked). An
  // error from it (the IdP cannot be asked) ends nothing. Blocks in `active`: call it off the
  // I/O threads. Returns how many sessions it ended.
  uint32_t RecheckTokens(const std::function<absl::StatusOr<bool>(const std::string& token)>& active);
  // Ends the live sessions the revocation covers (57P01); returns how many.
  uint32_t PrincipalRevoked(const pgward::v1::Revocation& revocation) override;
  // The identity provider revoked (issuer, subject) as of `not_before_unix` (a CAEP or RISC
  // event, already stored as the subject's cut-off): its live sessions whose token was issued
  // before then end (57P01, end reason token_revoked, `what` naming the event in the
  // message); logins racing it are checked again. Returns how many ended.
  uint32_t SubjectRevoked(const std::string& issuer, const std::string& subject, int64_t not_before_unix,
                          const std::string& what);
  // A grant was created or its expiry changed: the expiry watch looks again for the next grant
  // to expire, and live sessions it covers get their (wider) effective policy.
  void GrantAdded() override;
  // Starts the expiry watch (on a strand of the store executor): when a grant's expiry
  // passes, live sessions no grant covers any more end (57P01, end reason grant_expired); when
  // a rotated agent token's grace period ends, an agent still using it is disconnected.
  // Call once.
  void StartExpiryWatch();
  // Ends the expiry watch and waits until it has; idempotent. Call it while the store executor
  // still runs (the destructor calls it too).
  void StopExpiryWatch();
  ~SessionBroker() override;
  // Ends the agent's control stream and its live sessions (57P01) and fails its pending ones.
  void AgentDeleted(const std::string& agent) override;
  // Disconnects the agent if it uses a token rotated out (57P01 for its live sessions, end
  // reason agent_token_rotated), and has the expiry watch wait for a grace period's end.
  void AgentTokenRotated(const std::string& agent) override;
  // The agent's control stream ended and none replaced it. A grant sent on it may never have
  // arrived, and nothing else would tell the caller waiting for it, so the agent's pending
  // opens fail now (08006) rather than at the open timeout. Its live sessions go on: each runs
  // on its own Session stream, which an agent keeps across a control stream reconnect (same
  // boot id) and which breaks by itself when the agent process dies.
  void AgentOffline(const std::string& agent);

 private:
  struct Pending {
    std::string agent;
    std::shared_ptr<SessionBridge> bridge;
    std::shared_ptr<net::AsyncSignal> paired;
    SessionStream* stream = nullptr;
    bool agent_deleted = false;
    bool agent_offline = false;  // its control stream ended before the Session stream came
  };
  // Everything Open needs before it asks the agent: the grant to send, and the checks.
  struct PreparedSession {
    pgward::v1::SessionGrant grant;
    std::string agent;
    store::AgentCredentials agent_credential;  // the agent's token hashes (AgentRegistry::SendGrant)
    PrincipalCap principal_cap;
  };
  // Runs `work` (a store access) on the store executor and resumes with its result.
  template <typename Work>
  asio::awaitable<std::invoke_result_t<Work&>> OnStore(Work work) {
    co_return co_await asio::co_spawn(
        options_.store_executor, [&work]() -> asio::awaitable<std::invoke_result_t<Work&>> { co_return work(); },
        asio::use_awaitable);
  }
  absl::StatusOr<PreparedSession> Prepare(const identity::VerifiedToken& token, const std::string& connection,
                                          const CallerInfo& caller);
  // Why a live session must end now that revocations or grants changed: (reason, message for
  // the caller), or nullopt if it may go on, and then its effective policy now in `*policy`
  // (if not null). Uses the store; fails closed (a store error ends it, since the grant cannot
  // be confirmed).
  // `uncovered` is the (reason, message) for a session no grant covers any more.
  std::optional<std::pair<std::string, std::string>> EndReasonNow(const LiveSession& session,
                                                                  const std::pair<std::string, std::string>& uncovered,
                                                                  pgward::v1::Policy* policy = nullptr);
  // Ends the live sessions that EndReasonNow says must end, and sends the others' agents their
  // new effective policy where it changed (ApplyPolicy).
  void RecheckLiveSessions(const std::pair<std::string, std::string>& uncovered);
  // Tells the session's agent its new policy, unless it already has it.
  void ApplyPolicy(LiveSession& session, const pgward::v1::Policy& policy);
  asio::awaitable<void> WatchExpiry();
  void WakeExpiryWatch();
  // Disconnects those of `agents` that are connected with a token the store no longer accepts,
  // and ends their live sessions.
  void CheckAgentTokens(const std::vector<std::string>& agents);

  store::Store& store_;
  const crypto::SecretBox& secrets_;
  AgentRegistry& agents_;
  const BrokerOptions options_;
  SessionAdmission admission_;
  absl::Mutex mu_;
  // One recheck at a time, so the policies sent for one session arrive in the order the store
  // changed (taken before mu_, never inside it).
  absl::Mutex recheck_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Bumped (under mu_) by every revocation and grant change, before they scan live_. A login
  // whose checks read the store before the change but that joins live_ after the scan sees a
  // different value, and checks again (Open).
  uint64_t authorization_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // The expiry watch's strand and its timer and stop flag (touched only on that strand), and
  // what StopExpiryWatch waits for.
  std::optional<asio::strand<asio::any_io_executor>> expiry_strand_;
  std::unique_ptr<asio::steady_timer> expiry_timer_;
  bool expiry_stop_ = false;
  std::promise<void> expiry_done_;
  std::future<void> expiry_stopped_;
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<LiveSession>> live_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int32_t, std::shared_ptr<LiveSession>> by_cancel_pid_ ABSL_GUARDED_BY(mu_);
};

// The most permissive of the matching grants wins: read-write, then explicit classes
// (their union), then read-only. Literal capture is on if any grant asks for it.
pgward::v1::Policy EffectivePolicy(const std::vector<pgward::v1::Grant>& grants);

}  // namespace pgward::gateway
