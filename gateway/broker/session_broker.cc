#include "gateway/broker/session_broker.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/random.h"
#include "common/crypto/token_hash.h"
#include "common/pgwire/sqlstate.h"
#include "common/util/log.h"
#include "gateway/broker/event_bounds.h"

namespace pgward::gateway {
namespace {

using namespace asio::experimental::awaitable_operators;

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What MODE_READ_WRITE allows, as statement class names (the agent's StatementClassName).
constexpr const char* kReadWriteClasses[] = {"read",     "write",    "ddl",       "transaction", "session",
                                             "copy_in",  "copy_out", "privilege", "maintenance"};

int ModeRank(pgward::v1::Mode mode) {
  switch (mode) {
    case pgward::v1::MODE_READ_WRITE: return 3;
    case pgward::v1::MODE_STATEMENT_CLASSES: return 2;
    case pgward::v1::MODE_READ_ONLY: return 1;
    default: return 0;
  }
}

// What the caller of a session ended by `r` is told (FATAL 57P01).
std::string RevokedEndMessage(const pgward::v1::Revocation& r) {
  return r.principal().empty() ? absl::StrCat("pgward: the session ended because its principal's group \"", r.group(),
                                              "\" was revoked by an administrator")
                               : absl::StrCat("pgward: the session ended because its principal \"", r.principal(),
                                              "\" was revoked by an administrator");
}

// What the caller of a session ended by the identity provider's revocation event is told.
std::string IdpRevokedEndMessage(const std::string& what) {
  return absl::StrCat("pgward: the session ended because the identity provider revoked its principal's tokens (",
                      what, ")");
}

const std::pair<std::string, std::string> kGrantDeleted{"grant_deleted",
                                                       "pgward: the session ended because its grant was deleted"};
const std::pair<std::string, std::string> kGrantExpired{"grant_expired",
                                                       "pgward: the session ended because its grant expired"};

}  // namespace

void LiveSession::Kill(std::string reason, std::string message) {
  asio::dispatch(executor, [self = shared_from_this(), reason = std::move(reason),
                            message = std::move(message)]() mutable {
    self->KillOnExecutor(std::move(reason), std::move(message));
  });
}

void LiveSession::KillOnExecutor(std::string reason, std::string message) {
  pgward::v1::GatewayMessage end;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (kill_reason_.empty()) {
      kill_reason_ = reason;
      kill_message_ = message;
      auto* e = end.mutable_end_session();
      e->set_session_id(session_id);
      e->set_reason(std::move(reason));
      e->set_sqlstate(std::string(pgwire::sqlstate::kAdminShutdown));
      e->set_message(std::move(message));
    }
  }
  // On the session's executor, where the stream is finished and released: it still exists
  // (finished_ is set before Finish, and the owner releases it only after that). Outside mu_:
  // TryCancel may run reactions inline, and they may resume the caller's coroutine, which
  // takes mu_.
  stream->Cancel();
  // Without it the agent would see only its session stream cancelled and close the upstream
  // socket, and a backend busy in a statement does not notice a closed socket until it
  // writes (pg_sleep(30) runs on). Outside mu_: the registry takes its own locks.
  if (end.has_end_session() && agents != nullptr && !agents->Send(agent, std::move(end))) {
    Log(LogLevel::kInfo, "broker", "session ", session_id, ": its agent ", agent,
        " is offline; the session stream's end closes the upstream connection when it notices");
  }
}

void LiveSession::MarkFinished() {
  absl::MutexLock lock(&mu_);
  finished_ = true;
}

std::pair<std::string, std::string> LiveSession::KillReason() {
  absl::MutexLock lock(&mu_);
  return {kill_reason_, kill_message_};
}

bool LiveSession::ReplacePolicy(const pgward::v1::Policy& next) {
  absl::MutexLock lock(&mu_);
  // EffectivePolicy builds policies in one order (classes sorted), so equal bytes mean equal.
  if (policy_.SerializeAsString() == next.SerializeAsString()) return false;
  policy_ = next;
  return true;
}

pgward::v1::Policy EffectivePolicy(const std::vector<pgward::v1::Grant>& grants) {
  pgward::v1::Policy best;
  std::set<std::string> classes;
  bool capture = false;
  bool monitoring = false;
  for (const auto& grant : grants) {
    const auto& policy = grant.policy();
    capture = capture || policy.capture_literals();
    monitoring = monitoring || policy.allow_monitoring();
    if (policy.mode() == pgward::v1::MODE_STATEMENT_CLASSES) {
      classes.insert(policy.statement_classes().begin(), policy.statement_classes().end());
    }
    if (ModeRank(policy.mode()) > ModeRank(best.mode())) {
      best = policy;
      best.set_grant_id(grant.id());
    }
  }
  // Read-write is every class but caller-supplied code ("procedure", alias "code"). A classes
  // grant that adds code on top of a read-write one widens it: the session gets both.
  if (best.mode() == pgward::v1::MODE_READ_WRITE && (classes.count("procedure") > 0 || classes.count("code") > 0)) {
    best.set_mode(pgward::v1::MODE_STATEMENT_CLASSES);
    classes.insert(std::begin(kReadWriteClasses), std::end(kReadWriteClasses));
  }
  if (best.mode() == pgward::v1::MODE_STATEMENT_CLASSES) {
    best.clear_statement_classes();
    for (const auto& c : classes) best.add_statement_classes(c);
  }
  best.set_capture_literals(capture);
  best.set_allow_monitoring(monitoring);
  return best;
}

SessionBroker::SessionBroker(store::Store& store, const crypto::SecretBox& secrets, AgentRegistry& agents,
                             BrokerOptions options)
    : store_(store), secrets_(secrets), agents_(agents), options_(std::move(options)) {}

absl::StatusOr<SessionBroker::PreparedSession> SessionBroker::Prepare(const identity::VerifiedToken& token,
                                                                      const std::string& connection_name,
                                                                      const CallerInfo& caller) {
  auto revoked = store_.FindRevocation(token.issuer, token.principal, token.groups);
  if (!revoked.ok()) return absl::UnavailableError("the gateway store is unavailable");
  if (revoked->has_value()) {
    const pgward::v1::Revocation& r = **revoked;
    return absl::PermissionDeniedError(
        r.principal().empty()
            ? absl::StrCat("principal \"", token.principal, "\" is revoked: its group \"", r.group(), "\" was revoked")
            : absl::StrCat("principal \"", token.principal, "\" is revoked"));
  }
  // The identity provider's revocation event (gateway/events) bars tokens issued before it.
  auto cutoff = store_.SubjectCutoff(token.issuer, token.subject);
  if (!cutoff.ok()) return absl::UnavailableError("the gateway store is unavailable");
  if (token.issued_unix < *cutoff) {
    return absl::PermissionDeniedError(absl::StrCat(
        "principal \"", token.principal,
        "\": the identity provider revoked its tokens issued before this one's; present a newly issued token"));
  }
  auto connection = store_.GetConnection(connection_name);
  if (!connection.ok()) {
    if (absl::IsNotFound(connection.status())) {
      return absl::NotFoundError(absl::StrCat("connection \"", AbslView(connection_name).substr(0, 80),
                                              "\" does not exist; use dbname=<connection name>"));
    }
    return absl::UnavailableError("the gateway store is unavailable");
  }
  auto grants = store_.FindGrants(token.issuer, token.principal, token.groups, connection_name, NowMillis(),
                                  options_.issuerless_grants_issuer);
  if (!grants.ok()) return absl::UnavailableError("the gateway store is unavailable");
  if (grants->empty()) {
    return absl::PermissionDeniedError(absl::StrCat("principal \"", token.principal,
                                                    "\" has no grant on connection \"", connection_name, "\""));
  }
  if (!agents_.Online(connection->agent())) {
    return absl::UnavailableError(absl::StrCat("the agent \"", connection->agent(), "\" serving connection \"",
                                               connection_name, "\" is offline; try again later"));
  }
  auto credential = store_.GetAgentCredentials(connection->agent());
  if (!credential.ok()) return absl::UnavailableError("the gateway store is unavailable");
  PreparedSession prepared;
  prepared.agent = connection->agent();
  prepared.agent_credential = *std::move(credential);
  prepared.principal_cap = PrincipalSessionCap(*grants, options_.caps.per_principal);
  pgward::v1::SessionGrant& grant = prepared.grant;
  grant.set_session_id(crypto::NewSessionId());
  grant.set_principal(token.principal);
  grant.set_issuer(token.issuer);
  for (const auto& g : token.groups) grant.add_groups(g);
  grant.set_connection(connection_name);
  auto* target = grant.mutable_target();
  target->set_host(connection->host());
  target->set_port(connection->port());
  target->set_database(connection->database());
  target->set_user(connection->user());
  target->set_sslmode(connection->sslmode());
  target->set_password_ref(connection->password_ref());
  target->set_ca_file(connection->ca_file());
  if (absl::StartsWith(connection->password_ref(), "gateway:")) {
    auto sealed = store_.GetSealedPassword(connection_name);
    if (!sealed.ok()) return absl::UnavailableError("the connection's stored credential is unavailable");
    auto password = secrets_.Open(*sealed);
    if (!password.ok()) {
      Log(LogLevel::kError, "broker", "cannot decrypt the credential of connection ", connection_name,
          ": ", password.status().message());
      return absl::UnavailableError("the connection's stored credential cannot be decrypted");
    }
    target->set_password_value(*password);
  }
  *grant.mutable_policy() = EffectivePolicy(*grants);
  grant.set_deadline_unix_ms(token.expires_unix * 1000);
  grant.set_client_addr(caller.client_addr);
  // The caller chose these (startup packet); they are recorded and shown, so they are bounded.
  std::string caller_user = caller.caller_user;
  std::string application_name = caller.application_name;
  TruncateUtf8(caller_user, kMaxShortFieldBytes);
  TruncateUtf8(application_name, kMaxShortFieldBytes);
  grant.set_caller_user(std::move(caller_user));
  grant.set_application_name(std::move(application_name));
  for (const auto& [name, value] : caller.startup_parameters) {
    (*grant.mutable_startup_parameters())[name] = value;
  }
  return prepared;
}

asio::awaitable<absl::StatusOr<std::shared_ptr<LiveSession>>> SessionBroker::Open(
    const identity::VerifiedToken& token, const std::string& connection_name, const CallerInfo& caller) {
  uint64_t epoch_checked = 0;
  {
    absl::MutexLock lock(&mu_);
    epoch_checked = authorization_epoch_;
  }
  auto prepared = co_await OnStore([&] { return Prepare(token, connection_name, caller); });
  if (!prepared.ok()) co_return prepared.status();
  // Counted before the agent hears of it, so concurrent logins cannot pass the caps together.
  auto ticket = admission_.Admit(token.issuer, token.principal, connection_name, prepared->principal_cap,
                                 options_.caps.per_connection);
  if (!ticket.ok()) co_return ticket.status();
  const std::string agent = prepared->agent;
  const std::string session_id = prepared->grant.session_id();
  const std::string application_name = prepared->grant.application_name();  // bounded by Prepare
  const std::string caller_user = prepared->grant.caller_user();
  const pgward::v1::Policy policy = prepared->grant.policy();

  auto executor = co_await asio::this_coro::executor;
  auto bridge = std::make_shared<SessionBridge>(executor);
  auto paired = std::make_shared<net::AsyncSignal>(executor);
  {
    absl::MutexLock lock(&mu_);
    pending_[session_id] = Pending{agent, bridge, paired, nullptr, false, false};
  }
  pgward::v1::GatewayMessage message;
  *message.mutable_session_grant() = std::move(prepared->grant);
  if (!agents_.SendGrant(agent, prepared->agent_credential, std::move(message))) {
    absl::MutexLock lock(&mu_);
    pending_.erase(session_id);
    co_return absl::UnavailableError(absl::StrCat("the agent \"", agent, "\" is offline; try again later"));
  }
  Log(LogLevel::kInfo, "broker", "session ", session_id, " for ", token.principal, " on ", connection_name,
      " granted to agent ", agent);

  asio::steady_timer timer(executor, options_.open_timeout);
  co_await (paired->Wait() || timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable)));
  SessionStream* stream = nullptr;
  bool agent_deleted = false;
  bool agent_offline = false;
  std::shared_ptr<LiveSession> session;
  bool check_again = false;
  {
    // Leaving pending_ and joining live_ in one step: AgentDeleted sees the session in one or
    // the other, never in neither.
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(session_id);
    if (it != pending_.end()) {
      stream = it->second.stream;
      agent_deleted = it->second.agent_deleted;
      agent_offline = it->second.agent_offline;
      pending_.erase(it);
    }
    if (stream != nullptr && !agent_deleted && stream->first_frame().opened().ok()) {
      session = std::make_shared<LiveSession>();
      session->session_id = session_id;
      session->principal = token.principal;
      session->issuer = token.issuer;
      session->connection = connection_name;
      session->agent = agent;
      session->groups = token.groups;
      session->subject = token.subject;
      session->token_issued_unix = token.issued_unix;
      session->access_token = caller.access_token;
      session->opened = stream->first_frame().opened();
      session->stream = stream;
      session->bridge = bridge;
      session->admission = *std::move(ticket);
      session->agents = &agents_;
      session->executor = executor;
      session->ReplacePolicy(policy);
      session->cancel_key = crypto::RandomUint32();
      // The caller's BackendKeyData is ours, never the upstream's: a random, unused pid.
      do {
        session->cancel_pid = static_cast<int32_t>(crypto::RandomUint32() & 0x7fffffff);
      } while (session->cancel_pid == 0 || by_cancel_pid_.contains(session->cancel_pid));
      live_[session_id] = session;
      by_cancel_pid_[session->cancel_pid] = session;
      check_again = authorization_epoch_ != epoch_checked;
    }
  }
  if (stream == nullptr) {
    if (agent_deleted) {
      co_return absl::UnavailableError(absl::StrCat("the agent \"", agent, "\" was deleted; try again later"));
    }
    if (agent_offline) {
      co_return absl::UnavailableError(
          absl::StrCat("the agent \"", agent, "\" went offline before it opened the session; try again later"));
    }
    co_return absl::DeadlineExceededError(absl::StrCat("the agent \"", agent, "\" did not open the session within ",
                                                       options_.open_timeout.count() / 1000, " s"));
  }
  if (!session) {
    const pgward::v1::SessionOpened& opened = stream->first_frame().opened();
    std::string message = opened.message().empty() ? std::string("upstream login failed") : opened.message();
    if (agent_deleted) message = absl::StrCat("the agent \"", agent, "\" was deleted; try again later");
    stream->FinishOk();
    stream->Release();
    co_return absl::UnavailableError(message);
  }

  pgward::v1::SessionRecord record;
  record.set_session_id(session_id);
  record.set_principal(token.principal);
  record.set_issuer(token.issuer);
  record.set_connection(connection_name);
  record.set_agent(agent);
  record.set_client_addr(caller.client_addr);
  record.set_application_name(application_name);
  record.set_caller_user(caller_user);
  record.set_started_unix_ms(NowMillis());
  absl::Status stored = co_await OnStore([&] { return store_.InsertSession(record); });
  if (!stored.ok()) Log(LogLevel::kError, "broker", "recording session ", session_id, ": ", stored.message());
  if (check_again) {
    // A revocation or grant change came between Prepare's checks and joining live_, so its
    // scan may have missed this session. It is in live_ now, where any later scan finds it.
    // Under recheck_mu_ like every recheck, so policies reach the agent in the store's order.
    auto end = co_await OnStore([&] {
      absl::MutexLock recheck(&recheck_mu_);
      pgward::v1::Policy now;
      auto reason = EndReasonNow(*session, kGrantDeleted, &now);
      if (!reason.has_value()) ApplyPolicy(*session, now);
      return reason;
    });
    if (end.has_value()) {
      Log(LogLevel::kInfo, "broker", "ending session ", session_id, " of ", token.principal,
          " at once: authorization changed while it opened (", end->first, ")");
      session->Kill(end->first, end->second);
    }
  }
  co_return session;
}

bool SessionBroker::PairStream(const std::string& session_id, const std::string& agent, SessionStream* stream) {
  std::shared_ptr<net::AsyncSignal> paired;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(session_id);
    if (it == pending_.end() || it->second.stream != nullptr) return false;
    if (it->second.agent != agent) {
      Log(LogLevel::kWarn, "broker", "agent ", agent, " tried to open session ", session_id,
          " granted to agent ", it->second.agent);
      return false;
    }
    stream->Attach(it->second.bridge);
    it->second.stream = stream;
    paired = it->second.paired;
  }
  // Outside mu_: this may run the waiting Open() right here, and it takes mu_.
  paired->Post(true);
  return true;
}

asio::awaitable<void> SessionBroker::Close(LiveSession& session, const std::string& end_reason) {
  {
    absl::MutexLock lock(&mu_);
    live_.erase(session.session_id);
    by_cancel_pid_.erase(session.cancel_pid);
  }
  session.admission.Release();
  const int64_t ended_ms = NowMillis();
  absl::Status status =
      co_await OnStore([&] { return store_.EndSession(session.session_id, ended_ms, end_reason); });
  if (!status.ok()) Log(LogLevel::kError, "broker", "ending session ", session.session_id, ": ", status.message());
}

void SessionBroker::Cancel(int32_t pid, uint32_t key) {
  std::shared_ptr<LiveSession> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_cancel_pid_.find(pid);
    if (it != by_cancel_pid_.end()) session = it->second;
  }
  auto as_bytes = [](uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), sizeof v); };
  if (!session || !crypto::ConstantTimeEquals(as_bytes(session->cancel_key), as_bytes(key))) {
    Log(LogLevel::kInfo, "broker", "ignored a cancel request with an unknown key");
    return;
  }
  pgward::v1::GatewayMessage message;
  message.mutable_cancel_session()->set_session_id(session->session_id);
  bool sent = agents_.Send(session->agent, std::move(message));
  Log(LogLevel::kInfo, "broker", "cancel for session ", session->session_id, sent ? " sent to agent " : " could not reach agent ",
      session->agent);
}

bool SessionBroker::AgentOnline(const std::string& agent) { return agents_.Online(agent); }

uint32_t SessionBroker::ActiveSessions(const std::string& agent) {
  absl::MutexLock lock(&mu_);
  uint32_t count = 0;
  for (const auto& [id, session] : live_) count += session->agent == agent ? 1 : 0;
  return count;
}

absl::Status SessionBroker::KillSession(const std::string& session_id) {
  std::shared_ptr<LiveSession> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(session_id);
    if (it != live_.end()) session = it->second;
  }
  if (!session) return absl::NotFoundError(absl::StrCat("no live session ", session_id));
  session->Kill("killed", "pgward: the session was terminated by an administrator");
  return absl::OkStatus();
}

std::optional<std::pair<std::string, std::string>> SessionBroker::EndReasonNow(
    const LiveSession& session, const std::pair<std::string, std::string>& uncovered, pgward::v1::Policy* policy) {
  auto revoked = store_.FindRevocation(session.issuer, session.principal, session.groups);
  if (revoked.ok() && revoked->has_value()) {
    return std::pair<std::string, std::string>("principal_revoked", RevokedEndMessage(**revoked));
  }
  auto cutoff = store_.SubjectCutoff(session.issuer, session.subject);
  if (cutoff.ok() && session.token_issued_unix < *cutoff) {
    return std::pair<std::string, std::string>("token_revoked", IdpRevokedEndMessage("a revocation event"));
  }
  auto grants = store_.FindGrants(session.issuer, session.principal, session.groups, session.connection, NowMillis(),
                                  options_.issuerless_grants_issuer);
  // Fail closed: a session whose authorization cannot be confirmed ends too.
  if (!revoked.ok() || !cutoff.ok() || !grants.ok() || grants->empty()) return uncovered;
  if (policy != nullptr) *policy = EffectivePolicy(*grants);
  return std::nullopt;
}

void SessionBroker::ApplyPolicy(LiveSession& session, const pgward::v1::Policy& policy) {
  if (!session.ReplacePolicy(policy)) return;
  pgward::v1::GatewayMessage message;
  auto* update = message.mutable_update_policy();
  update->set_session_id(session.session_id);
  *update->mutable_policy() = policy;
  const bool sent = agents_.Send(session.agent, std::move(message));
  Log(LogLevel::kInfo, "broker", "session ", session.session_id, " of ", session.principal, ": policy now ",
      pgward::v1::Mode_Name(policy.mode()), " (grant ", policy.grant_id(), ")",
      sent ? ", sent to agent " : ", but its agent is offline: ending it; agent ", session.agent);
  // An agent that cannot hear of a narrower policy must not go on enforcing the wider one.
  if (!sent) session.Kill("grant_changed", "pgward: the session ended because its grant changed");
}

void SessionBroker::RecheckLiveSessions(const std::pair<std::string, std::string>& uncovered) {
  absl::MutexLock recheck(&recheck_mu_);
  std::vector<std::shared_ptr<LiveSession>> sessions;
  {
    absl::MutexLock lock(&mu_);
    ++authorization_epoch_;
    for (const auto& [id, session] : live_) sessions.push_back(session);
  }
  for (const auto& session : sessions) {
    pgward::v1::Policy policy;
    auto end = EndReasonNow(*session, uncovered, &policy);
    if (!end.has_value()) {
      ApplyPolicy(*session, policy);
      continue;
    }
    Log(LogLevel::kInfo, "broker", "ending session ", session->session_id, " of ", session->principal, ": ",
        end->first == "principal_revoked" ? "its principal is revoked" : "no grant covers it any more", " (",
        end->first, ")");
    session->Kill(end->first, end->second);
  }
}

void SessionBroker::GrantsChanged() { RecheckLiveSessions(kGrantDeleted); }

void SessionBroker::StartExpiryWatch() {
  expiry_strand_.emplace(asio::make_strand(options_.store_executor));
  expiry_timer_ = std::make_unique<asio::steady_timer>(*expiry_strand_);
  expiry_stopped_ = expiry_done_.get_future();
  asio::co_spawn(*expiry_strand_, WatchExpiry(), [this](std::exception_ptr) { expiry_done_.set_value(); });
}

void SessionBroker::StopExpiryWatch() {
  if (!expiry_stopped_.valid()) return;
  asio::post(*expiry_strand_, [this] {
    expiry_stop_ = true;
    expiry_timer_->cancel();
  });
  expiry_stopped_.wait();
  expiry_stopped_ = std::future<void>();
}

SessionBroker::~SessionBroker() { StopExpiryWatch(); }

void SessionBroker::GrantAdded() {
  RecheckLiveSessions(kGrantDeleted);
  WakeExpiryWatch();
}

void SessionBroker::WakeExpiryWatch() {
  if (!expiry_strand_.has_value()) return;
  asio::post(*expiry_strand_, [this] { expiry_timer_->cancel(); });
}

asio::awaitable<void> SessionBroker::WatchExpiry() {
  // Without anything to wait for, it still looks once a minute: a grant created by another
  // gateway process sharing the store (designed, not built) would not wake it.
  constexpr std::chrono::milliseconds kLongestWait{60000};
  std::optional<int64_t> grant_due;  // the grant expiry it waits for
  std::optional<int64_t> token_due;  // the end of a rotated agent token's grace period
  while (!expiry_stop_) {
    const int64_t now = NowMillis();
    if (grant_due.has_value() && *grant_due <= now) {
      RecheckLiveSessions(kGrantExpired);
      grant_due.reset();
    }
    if (token_due.has_value() && *token_due <= now) {
      CheckAgentTokens(agents_.OnlineAgents());
      token_due.reset();
    }
    std::chrono::milliseconds wait = kLongestWait;
    auto next_grant = store_.NextGrantExpiry(now);
    if (!next_grant.ok()) Log(LogLevel::kError, "broker", "reading grant expiries: ", next_grant.status().message());
    if (next_grant.ok() && next_grant->has_value()) {
      grant_due = **next_grant;
      wait = std::min(wait, std::chrono::milliseconds(*grant_due - now));
    }
    auto next_token = store_.NextAgentTokenExpiry(now);
    if (!next_token.ok()) {
      Log(LogLevel::kError, "broker", "reading agent token expiries: ", next_token.status().message());
    }
    if (next_token.ok() && next_token->has_value()) {
      token_due = **next_token;
      wait = std::min(wait, std::chrono::milliseconds(*token_due - now));
    }
    expiry_timer_->expires_after(wait);
    // Cancelled by WakeExpiryWatch: look again.
    co_await expiry_timer_->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

void SessionBroker::AgentTokenRotated(const std::string& agent) {
  CheckAgentTokens({agent});
  WakeExpiryWatch();
}

void SessionBroker::CheckAgentTokens(const std::vector<std::string>& agents) {
  for (const std::string& agent : agents) {
    auto credentials = store_.GetAgentCredentials(agent);
    // Deleted meanwhile: AgentDeleted ends it. A store error proves nothing: the heartbeat's
    // check (ControlStream::CredentialCurrent) looks again.
    if (!credentials.ok()) continue;
    if (!agents_.EndIfRotatedOut(agent, *credentials)) continue;
    std::vector<std::shared_ptr<LiveSession>> sessions;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, session] : live_) {
        if (session->agent == agent) sessions.push_back(session);
      }
    }
    for (const auto& session : sessions) {
      Log(LogLevel::kInfo, "broker", "ending session ", session->session_id, " of ", session->principal,
          ": its agent ", agent, " was disconnected (its token was rotated out)");
      session->Kill("agent_token_rotated",
                    "pgward: the session ended because its agent's token was rotated by an administrator");
    }
  }
}

uint32_t SessionBroker::RecheckTokens(const std::function<absl::StatusOr<bool>(const std::string& token)>& active) {
  std::vector<std::shared_ptr<LiveSession>> sessions;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, session] : live_) {
      if (!session->access_token.empty()) sessions.push_back(session);
    }
  }
  absl::flat_hash_map<std::string, bool> verdicts;  // token -> still active
  uint32_t ended = 0;
  for (const auto& session : sessions) {
    auto [it, fresh] = verdicts.try_emplace(session->access_token, true);
    if (fresh) {
      absl::StatusOr<bool> answer = active(session->access_token);
      if (!answer.ok()) {
        Log(LogLevel::kWarn, "broker", "could not re-check the token of session ", session->session_id, " of ",
            session->principal, " (it goes on): ", answer.status().message());
      }
      it->second = !answer.ok() || *answer;
    }
    if (it->second) continue;
    Log(LogLevel::kInfo, "broker", "ending session ", session->session_id, " of ", session->principal,
        ": the identity provider says its token is no longer active");
    session->Kill("token_revoked", "pgward: the session ended because its token was revoked by the identity provider");
    ++ended;
  }
  return ended;
}

uint32_t SessionBroker::PrincipalRevoked(const pgward::v1::Revocation& revocation) {
  std::vector<std::shared_ptr<LiveSession>> sessions;
  {
    absl::MutexLock lock(&mu_);
    ++authorization_epoch_;
    for (const auto& [id, session] : live_) {
      if (session->issuer != revocation.issuer()) continue;
      const bool covered = revocation.principal().empty()
                               ? std::find(session->groups.begin(), session->groups.end(), revocation.group()) !=
                                     session->groups.end()
                               : session->principal == revocation.principal();
      if (covered) sessions.push_back(session);
    }
  }
  for (const auto& session : sessions) {
    Log(LogLevel::kInfo, "broker", "ending session ", session->session_id, " of ", session->principal, " on agent ",
        session->agent, ": ", revocation.principal().empty() ? "its group " : "the principal ",
        revocation.principal().empty() ? revocation.group() : revocation.principal(), " was revoked");
    session->Kill("principal_revoked", RevokedEndMessage(revocation));
  }
  return static_cast<uint32_t>(sessions.size());
}

uint32_t SessionBroker::SubjectRevoked(const std::string& issuer, const std::string& subject,
                                       int64_t not_before_unix, const std::string& what) {
  std::vector<std::shared_ptr<LiveSession>> sessions;
  {
    absl::MutexLock lock(&mu_);
    ++authorization_epoch_;
    for (const auto& [id, session] : live_) {
      if (session->issuer == issuer && session->subject == subject && session->token_issued_unix < not_before_unix) {
        sessions.push_back(session);
      }
    }
  }
  for (const auto& session : sessions) {
    Log(LogLevel::kInfo, "broker", "ending session ", session->session_id, " of ", session->principal, " on agent ",
        session->agent, ": the identity provider revoked its tokens (", what, ")");
    session->Kill("token_revoked", IdpRevokedEndMessage(what));
  }
  return static_cast<uint32_t>(sessions.size());
}

void SessionBroker::AgentDeleted(const std::string& agent) {
  std::vector<std::shared_ptr<LiveSession>> sessions;
  std::vector<std::shared_ptr<net::AsyncSignal>> waiting;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, pending] : pending_) {
      if (pending.agent != agent) continue;
      pending.agent_deleted = true;
      waiting.push_back(pending.paired);
    }
    for (const auto& [id, session] : live_) {
      if (session->agent == agent) sessions.push_back(session);
    }
  }
  // After the pending opens are marked: the stream's end wakes them too (AgentOffline), and
  // they should say the agent was deleted, not that it went offline.
  agents_.End(agent, grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "this agent was deleted"));
  // Outside mu_: each may run its waiting Open() right here.
  for (const auto& signal : waiting) signal->Post(true);
  for (const auto& session : sessions) {
    Log(LogLevel::kInfo, "broker", "ending session ", session->session_id, " of ", session->principal,
        ": its agent ", agent, " was deleted");
    session->Kill("agent_deleted", "pgward: the session ended because its agent was deleted by an administrator");
  }
}

void SessionBroker::AgentOffline(const std::string& agent) {
  std::vector<std::shared_ptr<net::AsyncSignal>> waiting;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, pending] : pending_) {
      // A Session stream that already paired carries the session by itself.
      if (pending.agent != agent || pending.stream != nullptr) continue;
      pending.agent_offline = true;
      waiting.push_back(pending.paired);
    }
  }
  if (!waiting.empty()) {
    Log(LogLevel::kInfo, "broker", "agent ", agent, " went offline; failing ", waiting.size(),
        " session(s) waiting for it");
  }
  // Outside mu_: each may run its waiting Open() right here.
  for (const auto& signal : waiting) signal->Post(true);
}

}  // namespace pgward::gateway
