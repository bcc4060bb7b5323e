// AdminService handlers: see admin_service.h.
#include "gateway/admin/admin_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/crypto/random.h"
#include "common/crypto/token_hash.h"
#include "common/util/log.h"
#include "common/net/grpc_server_calls.h"
#include "gateway/admin/admin_validation.h"

namespace pgward::admin {
namespace {

int64_t NowUnixMs() { return absl::ToUnixMillis(absl::Now()); }

// absl and gRPC share the canonical code numbering. Internal details (SQLite messages, file
// paths) stay in the gateway log; the caller gets a pointer to it.
grpc::Status ToGrpc(const absl::Status& s, const char* method) {
  if (s.ok()) return grpc::Status::OK;
  switch (s.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
      Log(LogLevel::kError, "admin", method, ": ", s.ToString());
      return grpc::Status(static_cast<grpc::StatusCode>(s.code()), "internal error in the gateway store; see the gateway log");
    default:
      return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  }
}

// The Connection fields UpdateConnection may change (the name selects the row).
constexpr absl::string_view kUpdatableFields[] = {"agent", "host", "port", "database", "user",
                                                 "password_ref", "sslmode", "ca_file"};

void CopyField(absl::string_view field, const pgward::v1::Connection& from, pgward::v1::Connection& to) {
  if (field == "agent") to.set_agent(from.agent());
  if (field == "host") to.set_host(from.host());
  if (field == "port") to.set_port(from.port());
  if (field == "database") to.set_database(from.database());
  if (field == "user") to.set_user(from.user());
  if (field == "password_ref") to.set_password_ref(from.password_ref());
  if (field == "sslmode") to.set_sslmode(from.sslmode());
  if (field == "ca_file") to.set_ca_file(from.ca_file());
}

// Moves rows (newest first) into the response until the next would take it past
// kMaxListResponseBytes. False if some were left out. Each row costs its size plus a few bytes
// of field tag and length.
template <typename Row>
bool AppendBounded(std::vector<Row>& rows, google::protobuf::RepeatedPtrField<Row>& out) {
  size_t total = 0;
  for (Row& row : rows) {
    const size_t cost = row.ByteSizeLong() + 8;
    if (total + cost > AdminServiceImpl::kMaxListResponseBytes) return false;
    total += cost;
    *out.Add() = std::move(row);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> AdminServiceImpl::AuthorizeCall(const grpc::ServerContext& ctx) {
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return authorizer_.Authorize("");
  const absl::string_view value(it->second.data(), it->second.size());
  // The auth scheme is case-insensitive (RFC 7235 section 2.1).
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "Bearer ")) return authorizer_.Authorize("");
  const absl::string_view bearer = absl::StripAsciiWhitespace(value.substr(7));
  return authorizer_.Authorize(std::string_view(bearer.data(), bearer.size()));
}

template <typename Handler>
grpc::Status AdminServiceImpl::Serve(grpc::ServerContext* ctx, const char* method, Handler&& handler) {
  absl::StatusOr<std::string> admin = AuthorizeCall(*ctx);
  if (!admin.ok()) {
    Log(LogLevel::kWarn, "admin", method, " refused for ", ctx->peer(), ": ", admin.status().message());
    return ToGrpc(admin.status(), method);
  }
  return ToGrpc(handler(*admin), method);
}

// --- agents

grpc::Status AdminServiceImpl::CreateAgent(grpc::ServerContext* ctx,
                                                        const pgward::v1::CreateAgentRequest* req,
                                                        pgward::v1::CreateAgentResponse* resp) {
  return Serve(ctx, "CreateAgent", [&](const std::string& admin) -> absl::Status {
    if (absl::Status s = ValidateName("agent", req->name()); !s.ok()) return s;
    // Shown once in the response; only the hash is stored (contract section 6).
    std::string token = crypto::RandomToken();
    if (absl::Status s = store_.CreateAgent(req->name(), crypto::HashToken(token)); !s.ok()) return s;
    resp->mutable_agent()->set_name(req->name());
    resp->mutable_agent()->set_created_unix_ms(NowUnixMs());
    resp->set_token(std::move(token));
    Log(LogLevel::kInfo, "admin", admin, " created agent ", req->name());
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListAgents(grpc::ServerContext* ctx,
                                                       const pgward::v1::ListAgentsRequest*,
                                                       pgward::v1::ListAgentsResponse* resp) {
  return Serve(ctx, "ListAgents", [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<pgward::v1::Agent>> agents = store_.ListAgents();
    if (!agents.ok()) return agents.status();
    for (pgward::v1::Agent& a : *agents) {
      a.set_online(live_.AgentOnline(a.name()));
      a.set_active_sessions(live_.ActiveSessions(a.name()));
      live_.SpoolInto(a.name(), a);
      *resp->add_agents() = std::move(a);
    }
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteAgent(grpc::ServerContext* ctx,
                                                        const pgward::v1::DeleteAgentRequest* req,
                                                        pgward::v1::DeleteAgentResponse*) {
  return Serve(ctx, "DeleteAgent", [&](const std::string& admin) -> absl::Status {
    if (absl::Status s = ValidateName("agent", req->name()); !s.ok()) return s;
    if (absl::Status s = store_.DeleteAgent(req->name()); !s.ok()) return s;
    Log(LogLevel::kInfo, "admin", admin, " deleted agent ", req->name());
    // Its token is gone from the store; what it has open goes too: the control stream (no more
    // grants, no more events) and its live sessions (57P01).
    live_.AgentDeleted(req->name());
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RotateAgent(grpc::ServerContext* ctx, const pgward::v1::RotateAgentRequest* req,
                                           pgward::v1::RotateAgentResponse* resp) {
  return Serve(ctx, "RotateAgent", [&](const std::string& admin) -> absl::Status {
    if (absl::Status s = ValidateName("agent", req->name()); !s.ok()) return s;
    constexpr int64_t kMaxGraceMs = 7LL * 24 * 3600 * 1000;
    if (req->grace_ms() < 0 || req->grace_ms() > kMaxGraceMs) {
      return absl::InvalidArgumentError("grace must be from 0 to 7 days");
    }
    std::string token = crypto::RandomToken();
    const int64_t now = NowUnixMs();
    absl::StatusOr<store::AgentCredentials> stored =
        store_.RotateAgentToken(req->name(), crypto::HashToken(token), req->grace_ms(), now);
    if (!stored.ok()) return stored.status();
    resp->set_token(std::move(token));
    resp->set_old_token_expires_unix_ms(req->grace_ms() > 0 ? stored->previous_expires_unix_ms : now);
    Log(LogLevel::kInfo, "admin", admin, " rotated the token of agent ", req->name(), "; the old one ",
        req->grace_ms() > 0 ? absl::StrCat("works for ", req->grace_ms() / 1000, " s more") : "stopped at once");
    live_.AgentTokenRotated(req->name());
    return absl::OkStatus();
  });
}

// --- connections

grpc::Status AdminServiceImpl::CreateConnection(grpc::ServerContext* ctx,
                                                             const pgward::v1::CreateConnectionRequest* req,
                                                             pgward::v1::Connection* resp) {
  return Serve(ctx, "CreateConnection",
               [&](const std::string& admin) { return DoCreateConnection(admin, *req, *resp); });
}

absl::Status AdminServiceImpl::DoCreateConnection(const std::string& admin,
                                                  const pgward::v1::CreateConnectionRequest& req,
                                                  pgward::v1::Connection& resp) {
  pgward::v1::Connection c = req.connection();
  c.set_created_unix_ms(0);
  if (c.sslmode().empty()) c.set_sslmode("prefer");  // libpq's default
  if (absl::Status s = ValidateConnection(c); !s.ok()) return s;
  std::string sealed;
  if (IsGatewayPasswordRef(c.password_ref())) {
    if (req.password_value().empty()) {
      return absl::InvalidArgumentError("password_ref gateway: needs a password value (--password-file or --password-stdin)");
    }
    sealed = secrets_.Seal(req.password_value());
  } else if (!req.password_value().empty()) {
    return absl::InvalidArgumentError("a password value is only accepted with password_ref gateway:");
  }
  if (absl::Status s = store_.CreateConnection(c, sealed); !s.ok()) return s;
  absl::StatusOr<pgward::v1::Connection> stored = store_.GetConnection(c.name());
  if (!stored.ok()) return stored.status();
  resp = *std::move(stored);
  Log(LogLevel::kInfo, "admin", admin, " created connection ", c.name(), " on agent ", c.agent());
  return absl::OkStatus();
}

grpc::Status AdminServiceImpl::UpdateConnection(grpc::ServerContext* ctx,
                                                             const pgward::v1::UpdateConnectionRequest* req,
                                                             pgward::v1::Connection* resp) {
  return Serve(ctx, "UpdateConnection",
               [&](const std::string& admin) { return DoUpdateConnection(admin, *req, *resp); });
}

absl::Status AdminServiceImpl::DoUpdateConnection(const std::string& admin,
                                                  const pgward::v1::UpdateConnectionRequest& req,
                                                  pgward::v1::Connection& resp) {
  const pgward::v1::Connection& change = req.connection();
  if (absl::Status s = ValidateName("connection", change.name()); !s.ok()) return s;
  std::vector<std::string> fields;
  for (const std::string& f : req.update_fields()) {
    if (f == "password_value") continue;  // carried in its own request field
    if (std::find(std::begin(kUpdatableFields), std::end(kUpdatableFields), f) == std::end(kUpdatableFields)) {
      return absl::InvalidArgumentError(absl::StrCat("connection field \"", f.substr(0, 40),
                                                     "\" cannot be updated; updatable: agent, host, port, database,"
                                                     " user, password_ref, sslmode, ca_file"));
    }
    fields.push_back(f);
  }
  if (fields.empty() && req.password_value().empty()) return absl::InvalidArgumentError("nothing to update");
  absl::StatusOr<pgward::v1::Connection> current = store_.GetConnection(change.name());
  if (!current.ok()) return current.status();
  // Validate the connection as it will be, so a partial update cannot leave it inconsistent.
  pgward::v1::Connection merged = *current;
  for (const std::string& f : fields) CopyField(f, change, merged);
  if (absl::Status s = ValidateConnection(merged); !s.ok()) return s;

  std::optional<std::string> sealed;
  const bool was_gateway = IsGatewayPasswordRef(current->password_ref());
  if (IsGatewayPasswordRef(merged.password_ref())) {
    if (!req.password_value().empty()) {
      sealed = secrets_.Seal(req.password_value());
    } else if (!was_gateway) {
      return absl::InvalidArgumentError("password_ref gateway: needs a password value (--password-file or --password-stdin)");
    }
  } else {
    if (!req.password_value().empty()) {
      return absl::InvalidArgumentError("a password value is only accepted with password_ref gateway:");
    }
    if (was_gateway) sealed = std::string();  // the stored secret is no longer referenced: drop it
  }
  if (absl::Status s = store_.UpdateConnection(merged, fields, sealed); !s.ok()) return s;
  absl::StatusOr<pgward::v1::Connection> stored = store_.GetConnection(change.name());
  if (!stored.ok()) return stored.status();
  resp = *std::move(stored);
  Log(LogLevel::kInfo, "admin", admin, " updated connection ", change.name(),
      sealed.has_value() && !sealed->empty() ? " (new stored password)" : "");
  return absl::OkStatus();
}

grpc::Status AdminServiceImpl::ListConnections(grpc::ServerContext* ctx,
                                                            const pgward::v1::ListConnectionsRequest*,
                                                            pgward::v1::ListConnectionsResponse* resp) {
  return Serve(ctx, "ListConnections", [&](const std::string&) -> absl::Status {
    // The store's Connection rows never include the sealed password.
    absl::StatusOr<std::vector<pgward::v1::Connection>> list = store_.ListConnections();
    if (!list.ok()) return list.status();
    for (pgward::v1::Connection& c : *list) *resp->add_connections() = std::move(c);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteConnection(grpc::ServerContext* ctx,
                                                             const pgward::v1::DeleteConnectionRequest* req,
                                                             pgward::v1::DeleteConnectionResponse*) {
  return Serve(ctx, "DeleteConnection", [&](const std::string& admin) { return DoDeleteConnection(admin, req->name()); });
}

absl::Status AdminServiceImpl::DoDeleteConnection(const std::string& admin, const std::string& name) {
  if (absl::Status s = ValidateName("connection", name); !s.ok()) return s;
  if (absl::Status s = store_.DeleteConnection(name); !s.ok()) return s;
  Log(LogLevel::kInfo, "admin", admin, " deleted connection ", name, " and its grants");
  // Access ends with the grants (contract section 4: 57P01 on grant deletion): end the
  // sessions still running on the connection.
  pgward::v1::ListSessionsRequest active;
  active.set_active_only(true);
  active.set_connection(name);
  active.set_limit(10000);
  absl::StatusOr<std::vector<pgward::v1::SessionRecord>> live = store_.ListSessions(active);
  if (!live.ok()) return live.status();
  for (const pgward::v1::SessionRecord& s : *live) {
    absl::Status killed = live_.KillSession(s.session_id());
    if (!killed.ok() && !absl::IsNotFound(killed)) {
      Log(LogLevel::kWarn, "admin", "could not end session ", s.session_id(), ": ", killed.message());
    }
  }
  return absl::OkStatus();
}

// --- grants

grpc::Status AdminServiceImpl::CreateGrant(grpc::ServerContext* ctx,
                                                        const pgward::v1::CreateGrantRequest* req,
                                                        pgward::v1::Grant* resp) {
  return Serve(ctx, "CreateGrant", [&](const std::string& admin) -> absl::Status {
    pgward::v1::Grant g = req->grant();
    if (absl::Status s = ValidateGrant(g, NowUnixMs()); !s.ok()) return s;
    if (absl::Status s = ResolveGrantIssuer(g, trusted_issuers_); !s.ok()) return s;
    g.set_created_by(admin);
    g.mutable_policy()->set_grant_id("");  // filled per session from the grant's id
    absl::StatusOr<pgward::v1::Grant> created = store_.CreateGrant(std::move(g));
    if (!created.ok()) return created.status();
    *resp = *std::move(created);
    live_.GrantAdded();
    Log(LogLevel::kInfo, "admin", admin, " created grant ", resp->id(), " on ", resp->connection(), " for ",
        resp->principal().empty() ? absl::StrCat("group ", resp->group()) : resp->principal(), " of ",
        resp->issuer());
    return absl::OkStatus();
  });
}

namespace {

// The Grant fields UpdateGrant may change; who and where a grant covers stay (delete it and
// create another for that).
constexpr absl::string_view kUpdatableGrantFields[] = {"mode", "statement_classes", "expires_unix_ms",
                                                       "max_sessions", "allow_monitoring"};

// Applies the listed fields of `from` to the stored grant `to`.
absl::Status ApplyGrantUpdate(const pgward::v1::UpdateGrantRequest& req, int64_t now_unix_ms,
                              pgward::v1::Grant& to) {
  const pgward::v1::Grant& from = req.grant();
  bool mode = false;
  bool classes = false;
  bool expiry = false;
  for (const std::string& f : req.update_fields()) {
    if (std::find(std::begin(kUpdatableGrantFields), std::end(kUpdatableGrantFields), f) ==
        std::end(kUpdatableGrantFields)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "grant field \"", f.substr(0, 40),
          "\" cannot be updated; updatable: mode, statement_classes, expires_unix_ms, max_sessions, "
          "allow_monitoring (for another principal, group or connection, create a new grant)"));
    }
    pgward::v1::Policy& policy = *to.mutable_policy();
    if (f == "mode") {
      mode = true;
      policy.set_mode(from.policy().mode());
      if (policy.mode() != pgward::v1::MODE_STATEMENT_CLASSES) policy.clear_statement_classes();
    } else if (f == "statement_classes") {
      classes = true;
      policy.mutable_statement_classes()->CopyFrom(from.policy().statement_classes());
    } else if (f == "expires_unix_ms") {
      expiry = true;
      to.set_expires_unix_ms(from.expires_unix_ms());
    } else if (f == "max_sessions") {
      policy.mutable_limits()->set_max_sessions(from.policy().limits().max_sessions());
    } else if (f == "allow_monitoring") {
      policy.set_allow_monitoring(from.policy().allow_monitoring());
    }
  }
  if (req.update_fields().empty()) return absl::InvalidArgumentError("nothing to update");
  if (mode && to.policy().mode() == pgward::v1::MODE_STATEMENT_CLASSES && !classes) {
    return absl::InvalidArgumentError("mode classes needs the statement classes too");
  }
  if (!expiry && to.expires_unix_ms() != 0 && to.expires_unix_ms() <= now_unix_ms) {
    return absl::FailedPreconditionError(
        absl::StrCat("grant ", to.id(), " has expired; give it a new expiry to extend it"));
  }
  return ValidateGrant(to, now_unix_ms);
}

}  // namespace

grpc::Status AdminServiceImpl::UpdateGrant(grpc::ServerContext* ctx, const pgward::v1::UpdateGrantRequest* req,
                                           pgward::v1::Grant* resp) {
  return Serve(ctx, "UpdateGrant", [&](const std::string& admin) -> absl::Status {
    const std::string& id = req->grant().id();
    if (id.empty()) return absl::InvalidArgumentError("grant id is required");
    const int64_t now = NowUnixMs();
    absl::StatusOr<pgward::v1::Grant> updated =
        store_.UpdateGrant(id, [&](pgward::v1::Grant& g) { return ApplyGrantUpdate(*req, now, g); });
    if (!updated.ok()) return updated.status();
    *resp = *std::move(updated);
    Log(LogLevel::kInfo, "admin", admin, " updated grant ", id, " (", absl::StrJoin(req->update_fields(), ", "), ")");
    // Narrower or wider, the sessions it covers get their policy now; a new expiry is watched.
    live_.GrantAdded();
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListGrants(grpc::ServerContext* ctx,
                                                       const pgward::v1::ListGrantsRequest* req,
                                                       pgward::v1::ListGrantsResponse* resp) {
  return Serve(ctx, "ListGrants", [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<pgward::v1::Grant>> grants = store_.ListGrants(*req);
    if (!grants.ok()) return grants.status();
    for (pgward::v1::Grant& g : *grants) *resp->add_grants() = std::move(g);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::DeleteGrant(grpc::ServerContext* ctx,
                                                        const pgward::v1::DeleteGrantRequest* req,
                                                        pgward::v1::DeleteGrantResponse*) {
  return Serve(ctx, "DeleteGrant", [&](const std::string& admin) -> absl::Status {
    if (req->id().empty()) return absl::InvalidArgumentError("grant id is required");
    if (absl::Status s = store_.DeleteGrant(req->id()); !s.ok()) return s;
    Log(LogLevel::kInfo, "admin", admin, " deleted grant ", req->id());
    live_.GrantsChanged();
    return absl::OkStatus();
  });
}

// --- revocations

namespace {

// The revocation's subject from a request: exactly one of principal or group, and its issuer
// (the single trusted one when none is named).
absl::StatusOr<pgward::v1::Revocation> Subject(const std::string& principal, const std::string& group,
                                               const std::string& issuer,
                                               const std::vector<std::string>& trusted_issuers) {
  if (absl::Status s = ValidateSubject(principal, group); !s.ok()) return s;
  pgward::v1::Revocation r;
  r.set_principal(principal);
  r.set_group(group);
  r.set_issuer(issuer);
  if (absl::Status s = ResolveIssuer(*r.mutable_issuer(), trusted_issuers); !s.ok()) return s;
  return r;
}

std::string SubjectText(const pgward::v1::Revocation& r) {
  return r.principal().empty() ? absl::StrCat("group ", r.group(), " of ", r.issuer())
                               : absl::StrCat("principal ", r.principal(), " of ", r.issuer());
}

}  // namespace

grpc::Status AdminServiceImpl::RevokePrincipal(grpc::ServerContext* ctx,
                                               const pgward::v1::RevokePrincipalRequest* req,
                                               pgward::v1::Revocation* resp) {
  return Serve(ctx, "RevokePrincipal", [&](const std::string& admin) -> absl::Status {
    absl::StatusOr<pgward::v1::Revocation> subject =
        Subject(req->principal(), req->group(), req->issuer(), trusted_issuers_);
    if (!subject.ok()) return subject.status();
    if (absl::Status s = ValidateReason(req->reason()); !s.ok()) return s;
    pgward::v1::Revocation r = *std::move(subject);
    r.set_reason(req->reason());
    r.set_revoked_by(admin);
    r.set_revoked_unix_ms(NowUnixMs());
    if (absl::Status s = store_.Revoke(r); !s.ok()) return s;
    // Stored first: a login that reads the store from now on is refused, and the broker's scan
    // ends every session that was already past that check.
    r.set_sessions_ended(live_.PrincipalRevoked(r));
    Log(LogLevel::kInfo, "admin", admin, " revoked ", SubjectText(r), r.reason().empty() ? "" : " (reason: ",
        r.reason(), r.reason().empty() ? "" : ")", "; ended ", r.sessions_ended(), " live session(s)");
    *resp = std::move(r);
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::RestorePrincipal(grpc::ServerContext* ctx,
                                                const pgward::v1::RestorePrincipalRequest* req,
                                                pgward::v1::RestorePrincipalResponse*) {
  return Serve(ctx, "RestorePrincipal", [&](const std::string& admin) -> absl::Status {
    absl::StatusOr<pgward::v1::Revocation> r =
        Subject(req->principal(), req->group(), req->issuer(), trusted_issuers_);
    if (!r.ok()) return r.status();
    if (absl::Status s = store_.Restore(*r); !s.ok()) return s;
    Log(LogLevel::kInfo, "admin", admin, " restored ", SubjectText(*r));
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListRevocations(grpc::ServerContext* ctx, const pgward::v1::ListRevocationsRequest*,
                                               pgward::v1::ListRevocationsResponse* resp) {
  return Serve(ctx, "ListRevocations", [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<pgward::v1::Revocation>> rows = store_.ListRevocations();
    if (!rows.ok()) return rows.status();
    for (pgward::v1::Revocation& r : *rows) *resp->add_revocations() = std::move(r);
    return absl::OkStatus();
  });
}

// --- sessions and audit

grpc::Status AdminServiceImpl::ListSessions(grpc::ServerContext* ctx,
                                                         const pgward::v1::ListSessionsRequest* req,
                                                         pgward::v1::ListSessionsResponse* resp) {
  return Serve(ctx, "ListSessions", [&](const std::string&) -> absl::Status {
    absl::StatusOr<std::vector<pgward::v1::SessionRecord>> sessions = store_.ListSessions(*req);
    if (!sessions.ok()) return sessions.status();
    resp->set_truncated(!AppendBounded(*sessions, *resp->mutable_sessions()));
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::KillSession(grpc::ServerContext* ctx,
                                                        const pgward::v1::KillSessionRequest* req,
                                                        pgward::v1::KillSessionResponse*) {
  return Serve(ctx, "KillSession", [&](const std::string& admin) -> absl::Status {
    if (req->session_id().empty()) return absl::InvalidArgumentError("session id is required");
    absl::Status s = live_.KillSession(req->session_id());
    if (absl::IsNotFound(s)) return absl::NotFoundError(absl::StrCat("session ", req->session_id(), " is not live"));
    if (!s.ok()) return s;
    Log(LogLevel::kInfo, "admin", admin, " killed session ", req->session_id());
    return absl::OkStatus();
  });
}

grpc::Status AdminServiceImpl::ListAudit(grpc::ServerContext* ctx,
                                                      const pgward::v1::ListAuditRequest* req,
                                                      pgward::v1::ListAuditResponse* resp) {
  return Serve(ctx, "ListAudit", [&](const std::string&) -> absl::Status {
    if ((req->has_after_id() && req->after_id() < 0) || req->up_to_id() < 0) {
      return absl::InvalidArgumentError("audit ids are positive");
    }
    absl::StatusOr<std::vector<pgward::v1::AuditRow>> rows = store_.ListAudit(*req);
    if (!rows.ok()) return rows.status();
    resp->set_truncated(!AppendBounded(*rows, *resp->mutable_rows()));
    return absl::OkStatus();
  });
}

// --- serving

namespace {

// Serves `method` of `impl` for the calls `request` (AsyncService::RequestXxx) brings.
template <typename Request, typename Response, typename RequestFn>
void StartMethod(AdminServiceImpl* impl, pgward::v1::AdminService::AsyncService* service, RequestFn request,
                 grpc::Status (AdminServiceImpl::*method)(grpc::ServerContext*, const Request*, Response*),
                 net::GrpcDriver& driver, const asio::any_io_executor& executor) {
  net::UnaryMethod<Request, Response>::Start(
      [service, request](grpc::ServerContext* context, Request* req, grpc::ServerAsyncResponseWriter<Response>* writer,
                         grpc::ServerCompletionQueue* queue,
                         void* tag) { (service->*request)(context, req, writer, queue, queue, tag); },
      driver, executor,
      [impl, method](grpc::ServerContext& context, const Request& req, Response& resp) {
        return (impl->*method)(&context, &req, &resp);
      });
}

}  // namespace

void AdminServiceImpl::Start(net::GrpcDriver& driver, const asio::any_io_executor& executor) {
  using Service = pgward::v1::AdminService::AsyncService;
  StartMethod(this, &service_, &Service::RequestCreateAgent, &AdminServiceImpl::CreateAgent, driver, executor);
  StartMethod(this, &service_, &Service::RequestListAgents, &AdminServiceImpl::ListAgents, driver, executor);
  StartMethod(this, &service_, &Service::RequestDeleteAgent, &AdminServiceImpl::DeleteAgent, driver, executor);
  StartMethod(this, &service_, &Service::RequestRotateAgent, &AdminServiceImpl::RotateAgent, driver, executor);
  StartMethod(this, &service_, &Service::RequestCreateConnection, &AdminServiceImpl::CreateConnection, driver, executor);
  StartMethod(this, &service_, &Service::RequestUpdateConnection, &AdminServiceImpl::UpdateConnection, driver, executor);
  StartMethod(this, &service_, &Service::RequestListConnections, &AdminServiceImpl::ListConnections, driver, executor);
  StartMethod(this, &service_, &Service::RequestDeleteConnection, &AdminServiceImpl::DeleteConnection, driver, executor);
  StartMethod(this, &service_, &Service::RequestCreateGrant, &AdminServiceImpl::CreateGrant, driver, executor);
  StartMethod(this, &service_, &Service::RequestUpdateGrant, &AdminServiceImpl::UpdateGrant, driver, executor);
  StartMethod(this, &service_, &Service::RequestListGrants, &AdminServiceImpl::ListGrants, driver, executor);
  StartMethod(this, &service_, &Service::RequestDeleteGrant, &AdminServiceImpl::DeleteGrant, driver, executor);
  StartMethod(this, &service_, &Service::RequestRevokePrincipal, &AdminServiceImpl::RevokePrincipal, driver, executor);
  StartMethod(this, &service_, &Service::RequestRestorePrincipal, &AdminServiceImpl::RestorePrincipal, driver, executor);
  StartMethod(this, &service_, &Service::RequestListRevocations, &AdminServiceImpl::ListRevocations, driver, executor);
  StartMethod(this, &service_, &Service::RequestListSessions, &AdminServiceImpl::ListSessions, driver, executor);
  StartMethod(this, &service_, &Service::RequestKillSession, &AdminServiceImpl::KillSession, driver, executor);
  StartMethod(this, &service_, &Service::RequestListAudit, &AdminServiceImpl::ListAudit, driver, executor);
}

}  // namespace pgward::admin
