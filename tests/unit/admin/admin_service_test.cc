// AdminService over a real in-process gRPC server: authorization, validation and flows.
#include <catch2/catch.hpp>

#include "absl/time/clock.h"
#include "tests/unit/admin/admin_harness.h"

namespace pgward::admin {
namespace {

using testing::AdminHarness;
namespace v1 = pgward::v1;

v1::CreateConnectionRequest ConnectionRequest(const std::string& name = "app", const std::string& agent = "edge-1") {
  v1::CreateConnectionRequest req;
  v1::Connection& c = *req.mutable_connection();
  c.set_name(name);
  c.set_agent(agent);
  c.set_host("db.internal");
  c.set_port(5432);
  c.set_database("app");
  c.set_user("app_rw");
  c.set_password_ref("agent-env:APP_PASSWORD");
  c.set_sslmode("prefer");
  return req;
}

v1::CreateGrantRequest GrantRequest(const std::string& principal = "bot", const std::string& connection = "app") {
  v1::CreateGrantRequest req;
  req.mutable_grant()->set_principal(principal);
  req.mutable_grant()->set_connection(connection);
  req.mutable_grant()->mutable_policy()->set_mode(v1::MODE_READ_ONLY);
  return req;
}

void CreateAgent(AdminHarness& h, const std::string& name) {
  v1::CreateAgentRequest req;
  req.set_name(name);
  v1::CreateAgentResponse resp;
  REQUIRE(h.stub().CreateAgent(AdminHarness::Context().get(), req, &resp).ok());
}

TEST_CASE("calls without valid admin credentials are refused", "[admin][auth]") {
  AdminHarness h;
  const std::string authorization = GENERATE(std::string(""), std::string("Bearer "), std::string("Bearer wrong"),
                                             std::string("Basic test-admin-key-0123456789"),
                                             std::string("test-admin-key-0123456789"));
  v1::ListAgentsResponse resp;
  const grpc::Status s = h.stub().ListAgents(AdminHarness::Context(authorization).get(), {}, &resp);
  CHECK(s.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(s.error_message() == "missing or invalid admin credentials");
}

TEST_CASE("the bearer scheme is case-insensitive", "[admin][auth]") {
  AdminHarness h;
  v1::ListAgentsResponse resp;
  CHECK(h.stub().ListAgents(AdminHarness::Context(std::string("bearer ") + testing::kAdminKey).get(), {}, &resp).ok());
}

TEST_CASE("agents are created with a one-time token, listed with live state and deleted", "[admin][agents]") {
  AdminHarness h;
  v1::CreateAgentRequest req;
  req.set_name("edge-1");
  v1::CreateAgentResponse created;
  REQUIRE(h.stub().CreateAgent(AdminHarness::Context().get(), req, &created).ok());
  CHECK(created.agent().name() == "edge-1");
  CHECK(created.token().size() >= 40);
  // The store keeps only the hash, and it authenticates the token just shown.
  CHECK(h.store().AuthenticateAgent("edge-1", created.token()).ok());

  v1::CreateAgentResponse again;
  CHECK(h.stub().CreateAgent(AdminHarness::Context().get(), req, &again).error_code() == grpc::StatusCode::ALREADY_EXISTS);

  CreateAgent(h, "edge-2");
  h.live().SetOnline("edge-2");
  v1::ListAgentsResponse list;
  REQUIRE(h.stub().ListAgents(AdminHarness::Context().get(), {}, &list).ok());
  REQUIRE(list.agents_size() == 2);
  CHECK(list.agents(0).name() == "edge-1");
  CHECK_FALSE(list.agents(0).online());
  CHECK(list.agents(1).online());
  CHECK(list.agents(1).active_sessions() == 3);

  // In use by a connection: refused until the connection is gone.
  v1::Connection conn;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest("app", "edge-1"), &conn).ok());
  v1::DeleteAgentRequest del;
  del.set_name("edge-1");
  v1::DeleteAgentResponse ignored;
  CHECK(h.stub().DeleteAgent(AdminHarness::Context().get(), del, &ignored).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);
  v1::DeleteConnectionRequest del_conn;
  del_conn.set_name("app");
  v1::DeleteConnectionResponse ignored_conn;
  REQUIRE(h.stub().DeleteConnection(AdminHarness::Context().get(), del_conn, &ignored_conn).ok());
  CHECK(h.stub().DeleteAgent(AdminHarness::Context().get(), del, &ignored).ok());
  CHECK(h.stub().DeleteAgent(AdminHarness::Context().get(), del, &ignored).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("rotating an agent's token returns a new one once and tells the live side", "[admin][agents]") {
  AdminHarness h;
  v1::CreateAgentRequest create;
  create.set_name("edge-1");
  v1::CreateAgentResponse created;
  REQUIRE(h.stub().CreateAgent(AdminHarness::Context().get(), create, &created).ok());

  v1::RotateAgentRequest req;
  req.set_name("edge-1");
  req.set_grace_ms(600'000);
  v1::RotateAgentResponse resp;
  const int64_t before = absl::ToUnixMillis(absl::Now());
  REQUIRE(h.stub().RotateAgent(AdminHarness::Context().get(), req, &resp).ok());
  CHECK_FALSE(resp.token().empty());
  CHECK(resp.token() != created.token());
  CHECK(resp.old_token_expires_unix_ms() >= before + 600'000);
  CHECK(h.live().RotatedAgents() == std::vector<std::string>{"edge-1"});
  CHECK(h.store().AuthenticateAgent("edge-1", resp.token()).ok());
  CHECK(h.store().AuthenticateAgent("edge-1", created.token()).ok());  // within the grace

  for (int64_t grace : {int64_t{-1}, int64_t{8} * 24 * 3600 * 1000}) {
    req.set_grace_ms(grace);
    CHECK(h.stub().RotateAgent(AdminHarness::Context().get(), req, &resp).error_code() ==
          grpc::StatusCode::INVALID_ARGUMENT);
  }
  req.set_grace_ms(0);
  req.set_name("nobody");
  CHECK(h.stub().RotateAgent(AdminHarness::Context().get(), req, &resp).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(h.live().RotatedAgents().size() == 1);
}

TEST_CASE("invalid connections are refused with INVALID_ARGUMENT", "[admin][validation]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  using Mutator = void (*)(v1::CreateConnectionRequest&);
  const auto [what, mutate] = GENERATE(table<const char*, Mutator>({
      {"empty name", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_name(""); }},
      {"name with a space", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_name("my db"); }},
      {"name of 64 chars", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_name(std::string(64, 'a')); }},
      {"name with a slash", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_name("a/b"); }},
      {"port 0", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_port(0); }},
      {"port 65536", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_port(65536); }},
      {"sslmode allow", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_sslmode("allow"); }},
      {"empty host", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_host(""); }},
      {"empty database", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_database(""); }},
      {"empty user", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_user(""); }},
      {"unknown password ref", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_password_ref("vault:x"); }},
      {"env var starting with a digit", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_password_ref("agent-env:1X"); }},
      {"env var with a dash", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_password_ref("agent-env:A-B"); }},
      {"empty env var", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_password_ref("agent-env:"); }},
      {"relative agent file", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_password_ref("agent-file:pw.txt"); }},
      {"gateway ref without a value", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_password_ref("gateway:"); }},
      {"value without gateway ref", [](v1::CreateConnectionRequest& r) { r.set_password_value("secret"); }},
      {"relative ca file", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_ca_file("ca.pem"); }},
      {"bad agent name", [](v1::CreateConnectionRequest& r) { r.mutable_connection()->set_agent("edge 1"); }},
  }));
  v1::CreateConnectionRequest req = ConnectionRequest();
  mutate(req);
  v1::Connection resp;
  const grpc::Status s = h.stub().CreateConnection(AdminHarness::Context().get(), req, &resp);
  INFO(what << ": " << s.error_message());
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_FALSE(s.error_message().empty());
  v1::ListConnectionsResponse list;
  REQUIRE(h.stub().ListConnections(AdminHarness::Context().get(), {}, &list).ok());
  CHECK(list.connections_size() == 0);
}

TEST_CASE("a connection on an unknown agent is NOT_FOUND", "[admin][validation]") {
  AdminHarness h;
  v1::Connection resp;
  CHECK(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest("app", "ghost"), &resp).error_code() ==
        grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("gateway-stored passwords are sealed and never returned", "[admin][connections]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  const std::string password = "correct horse battery staple";
  v1::CreateConnectionRequest req = ConnectionRequest();
  req.mutable_connection()->set_password_ref("gateway:");
  req.set_password_value(password);
  v1::Connection created;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), req, &created).ok());
  CHECK(created.password_ref() == "gateway:");
  CHECK(created.created_unix_ms() > 0);
  CHECK(created.SerializeAsString().find(password) == std::string::npos);

  auto sealed = h.store().GetSealedPassword("app");
  REQUIRE(sealed.ok());
  CHECK(sealed->find(password) == std::string::npos);
  CHECK(*h.secrets().Open(*sealed) == password);

  v1::ListConnectionsResponse list;
  REQUIRE(h.stub().ListConnections(AdminHarness::Context().get(), {}, &list).ok());
  REQUIRE(list.connections_size() == 1);
  CHECK(list.SerializeAsString().find(password) == std::string::npos);
  CHECK(list.SerializeAsString().find(*sealed) == std::string::npos);

  // A new value via update replaces the sealed one; the response still carries none.
  v1::UpdateConnectionRequest update;
  update.mutable_connection()->set_name("app");
  update.set_password_value("new-secret");
  v1::Connection updated;
  REQUIRE(h.stub().UpdateConnection(AdminHarness::Context().get(), update, &updated).ok());
  CHECK(updated.SerializeAsString().find("new-secret") == std::string::npos);
  CHECK(*h.secrets().Open(*h.store().GetSealedPassword("app")) == "new-secret");

  // Moving to an agent-side reference drops the stored secret.
  update.set_password_value("");
  update.mutable_connection()->set_password_ref("agent-file:/etc/pgward/app.pw");
  update.add_update_fields("password_ref");
  REQUIRE(h.stub().UpdateConnection(AdminHarness::Context().get(), update, &updated).ok());
  CHECK(updated.password_ref() == "agent-file:/etc/pgward/app.pw");
  CHECK(h.store().GetSealedPassword("app")->empty());
}

TEST_CASE("connection updates change only the named fields and are validated", "[admin][connections]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  v1::Connection created;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &created).ok());

  v1::UpdateConnectionRequest update;
  update.mutable_connection()->set_name("app");
  update.mutable_connection()->set_port(6432);
  update.mutable_connection()->set_host("not-applied");
  update.add_update_fields("port");
  v1::Connection updated;
  REQUIRE(h.stub().UpdateConnection(AdminHarness::Context().get(), update, &updated).ok());
  CHECK(updated.port() == 6432);
  CHECK(updated.host() == "db.internal");

  update.mutable_connection()->set_sslmode("bogus");
  update.add_update_fields("sslmode");
  CHECK(h.stub().UpdateConnection(AdminHarness::Context().get(), update, &updated).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  v1::UpdateConnectionRequest rename;
  rename.mutable_connection()->set_name("app");
  rename.add_update_fields("name");
  CHECK(h.stub().UpdateConnection(AdminHarness::Context().get(), rename, &updated).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  v1::UpdateConnectionRequest to_gateway;
  to_gateway.mutable_connection()->set_name("app");
  to_gateway.mutable_connection()->set_password_ref("gateway:");
  to_gateway.add_update_fields("password_ref");
  CHECK(h.stub().UpdateConnection(AdminHarness::Context().get(), to_gateway, &updated).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  v1::UpdateConnectionRequest missing;
  missing.mutable_connection()->set_name("nope");
  missing.mutable_connection()->set_port(1);
  missing.add_update_fields("port");
  CHECK(h.stub().UpdateConnection(AdminHarness::Context().get(), missing, &updated).error_code() ==
        grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("invalid grants are refused with INVALID_ARGUMENT", "[admin][validation]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  v1::Connection conn;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &conn).ok());
  using Mutator = void (*)(v1::Grant&);
  const auto [what, mutate] = GENERATE(table<const char*, Mutator>({
      {"principal and group", [](v1::Grant& g) { g.set_group("ops"); }},
      {"neither principal nor group", [](v1::Grant& g) { g.set_principal(""); }},
      {"no mode", [](v1::Grant& g) { g.mutable_policy()->set_mode(v1::MODE_UNSPECIFIED); }},
      {"classes without class mode", [](v1::Grant& g) { g.mutable_policy()->add_statement_classes("read"); }},
      {"class mode without classes", [](v1::Grant& g) { g.mutable_policy()->set_mode(v1::MODE_STATEMENT_CLASSES); }},
      {"unknown class",
       [](v1::Grant& g) {
         g.mutable_policy()->set_mode(v1::MODE_STATEMENT_CLASSES);
         g.mutable_policy()->add_statement_classes("read");
         g.mutable_policy()->add_statement_classes("drop_everything");
       }},
      {"expired", [](v1::Grant& g) { g.set_expires_unix_ms(1000); }},
      {"issuer not a URL", [](v1::Grant& g) { g.set_issuer("idp"); }},
      {"issuer not trusted", [](v1::Grant& g) { g.set_issuer("https://evil.example"); }},
      {"principal with a newline", [](v1::Grant& g) { g.set_principal("bot\nforged"); }},
      {"principal with a bidi override", [](v1::Grant& g) { g.set_principal("bot\xe2\x80\xae"); }},
      // (Not-UTF-8 text cannot even travel: protobuf refuses it in proto3 strings.)
      {"principal with a C1 control", [](v1::Grant& g) { g.set_principal("bot\xc2\x9b"); }},
      {"max sessions over 100000", [](v1::Grant& g) { g.mutable_policy()->mutable_limits()->set_max_sessions(100001); }},
      {"bad connection name", [](v1::Grant& g) { g.set_connection("a b"); }},
  }));
  v1::CreateGrantRequest req = GrantRequest();
  mutate(*req.mutable_grant());
  v1::Grant resp;
  const grpc::Status s = h.stub().CreateGrant(AdminHarness::Context().get(), req, &resp);
  INFO(what << ": " << s.error_message());
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE("grants are created by the calling admin, filtered and deleted", "[admin][grants]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  v1::Connection conn;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &conn).ok());
  v1::Grant g;
  CHECK(h.stub().CreateGrant(AdminHarness::Context().get(), GrantRequest("bot", "nope"), &g).error_code() ==
        grpc::StatusCode::NOT_FOUND);

  v1::CreateGrantRequest classes = GrantRequest("bot");
  classes.mutable_grant()->mutable_policy()->set_mode(v1::MODE_STATEMENT_CLASSES);
  classes.mutable_grant()->mutable_policy()->add_statement_classes("read");
  classes.mutable_grant()->mutable_policy()->add_statement_classes("copy_out");
  classes.mutable_grant()->set_issuer("https://idp.example");
  classes.mutable_grant()->set_expires_unix_ms(absl::ToUnixMillis(absl::Now()) + 3'600'000);
  REQUIRE(h.stub().CreateGrant(AdminHarness::Context().get(), classes, &g).ok());
  CHECK(g.id().rfind("g_", 0) == 0);
  CHECK(g.created_by() == "admin.key");
  v1::Grant group;
  v1::CreateGrantRequest by_group = GrantRequest("");
  by_group.mutable_grant()->set_group("analysts");
  REQUIRE(h.stub().CreateGrant(AdminHarness::Context().get(), by_group, &group).ok());

  v1::ListGrantsRequest filter;
  filter.set_principal("bot");
  v1::ListGrantsResponse list;
  REQUIRE(h.stub().ListGrants(AdminHarness::Context().get(), filter, &list).ok());
  REQUIRE(list.grants_size() == 1);
  CHECK(list.grants(0).policy().statement_classes_size() == 2);
  list.Clear();
  REQUIRE(h.stub().ListGrants(AdminHarness::Context().get(), {}, &list).ok());
  CHECK(list.grants_size() == 2);

  v1::DeleteGrantRequest del;
  del.set_id(g.id());
  v1::DeleteGrantResponse ignored;
  REQUIRE(h.stub().DeleteGrant(AdminHarness::Context().get(), del, &ignored).ok());
  CHECK(h.stub().DeleteGrant(AdminHarness::Context().get(), del, &ignored).error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("grant updates change only the named policy fields, are validated and reach live sessions",
          "[admin][grants]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  v1::Connection conn;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &conn).ok());
  v1::CreateGrantRequest create = GrantRequest("bot");
  create.mutable_grant()->mutable_policy()->mutable_limits()->set_max_sessions(4);
  v1::Grant g;
  REQUIRE(h.stub().CreateGrant(AdminHarness::Context().get(), create, &g).ok());
  const int added_by_create = h.live().GrantsAdded();

  auto update = [&](std::initializer_list<const char*> fields, auto edit) {
    v1::UpdateGrantRequest req;
    req.mutable_grant()->set_id(g.id());
    for (const char* f : fields) req.add_update_fields(f);
    edit(*req.mutable_grant());
    v1::Grant out;
    grpc::Status status = h.stub().UpdateGrant(AdminHarness::Context().get(), req, &out);
    return std::make_pair(status, out);
  };

  // Narrowing to classes: mode and classes change, max_sessions stays, and the live side is told.
  auto [ok, updated] = update({"mode", "statement_classes"}, [](v1::Grant& c) {
    c.mutable_policy()->set_mode(v1::MODE_STATEMENT_CLASSES);
    c.mutable_policy()->add_statement_classes("read");
    c.set_principal("someone-else");  // not listed: ignored
  });
  REQUIRE(ok.ok());
  CHECK(updated.policy().mode() == v1::MODE_STATEMENT_CLASSES);
  CHECK(updated.policy().statement_classes_size() == 1);
  CHECK(updated.policy().limits().max_sessions() == 4);
  CHECK(updated.principal() == "bot");
  CHECK(h.live().GrantsAdded() == added_by_create + 1);

  // Back to read-only drops the class list.
  auto [ro, read_only] = update({"mode"}, [](v1::Grant& c) { c.mutable_policy()->set_mode(v1::MODE_READ_ONLY); });
  REQUIRE(ro.ok());
  CHECK(read_only.policy().statement_classes_size() == 0);

  // Refused, and the stored grant unchanged: who/where fields, nothing, bad classes, classes
  // without a list, a past expiry, an unknown grant.
  const int before = h.live().GrantsAdded();
  CHECK(update({"principal"}, [](v1::Grant&) {}).first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(update({}, [](v1::Grant&) {}).first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(update({"mode", "statement_classes"}, [](v1::Grant& c) {
          c.mutable_policy()->set_mode(v1::MODE_STATEMENT_CLASSES);
          c.mutable_policy()->add_statement_classes("teleport");
        }).first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(update({"mode"}, [](v1::Grant& c) { c.mutable_policy()->set_mode(v1::MODE_STATEMENT_CLASSES); })
            .first.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(update({"expires_unix_ms"}, [](v1::Grant& c) { c.set_expires_unix_ms(1000); }).first.error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  v1::UpdateGrantRequest unknown;
  unknown.mutable_grant()->set_id("g_nope");
  unknown.add_update_fields("mode");
  unknown.mutable_grant()->mutable_policy()->set_mode(v1::MODE_READ_WRITE);
  v1::Grant ignored;
  CHECK(h.stub().UpdateGrant(AdminHarness::Context().get(), unknown, &ignored).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(h.live().GrantsAdded() == before);
  v1::ListGrantsResponse list;
  REQUIRE(h.stub().ListGrants(AdminHarness::Context().get(), {}, &list).ok());
  REQUIRE(list.grants_size() == 1);
  CHECK(list.grants(0).policy().mode() == v1::MODE_READ_ONLY);
  CHECK(list.grants(0).principal() == "bot");
  CHECK(list.grants(0).expires_unix_ms() == 0);

  // Expiry, max sessions and monitoring.
  const int64_t in_an_hour = absl::ToUnixMillis(absl::Now()) + 3'600'000;
  auto [later, extended] = update({"expires_unix_ms", "max_sessions", "allow_monitoring"}, [&](v1::Grant& c) {
    c.set_expires_unix_ms(in_an_hour);
    c.mutable_policy()->set_allow_monitoring(true);
  });
  REQUIRE(later.ok());
  CHECK(extended.expires_unix_ms() == in_an_hour);
  CHECK(extended.policy().limits().max_sessions() == 0);
  CHECK(extended.policy().allow_monitoring());
}

TEST_CASE("sessions are listed, killed, and ended when their connection is deleted", "[admin][sessions]") {
  AdminHarness h;
  CreateAgent(h, "edge-1");
  v1::Connection conn;
  REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &conn).ok());
  for (const char* id : {"s1", "s2"}) {
    v1::SessionRecord s;
    s.set_session_id(id);
    s.set_principal("bot");
    s.set_connection("app");
    s.set_started_unix_ms(1000);
    REQUIRE(h.store().InsertSession(s).ok());
    h.live().AddLiveSession(id);
  }
  v1::ListSessionsRequest active;
  active.set_active_only(true);
  v1::ListSessionsResponse sessions;
  REQUIRE(h.stub().ListSessions(AdminHarness::Context().get(), active, &sessions).ok());
  CHECK(sessions.sessions_size() == 2);

  v1::KillSessionRequest kill;
  kill.set_session_id("s1");
  v1::KillSessionResponse ignored;
  REQUIRE(h.stub().KillSession(AdminHarness::Context().get(), kill, &ignored).ok());
  CHECK(h.stub().KillSession(AdminHarness::Context().get(), kill, &ignored).error_code() == grpc::StatusCode::NOT_FOUND);

  v1::DeleteConnectionRequest del;
  del.set_name("app");
  v1::DeleteConnectionResponse deleted;
  REQUIRE(h.stub().DeleteConnection(AdminHarness::Context().get(), del, &deleted).ok());
  CHECK(h.live().Killed() == std::set<std::string>{"s1", "s2"});
}

TEST_CASE("audit rows come back newest first with the session's identity", "[admin][audit]") {
  AdminHarness h;
  v1::SessionRecord s;
  s.set_session_id("s1");
  s.set_principal("bot");
  s.set_connection("app");
  s.set_agent("edge-1");
  REQUIRE(h.store().InsertSession(s).ok());
  v1::StatementEvent e;
  e.set_session_id("s1");
  e.set_statement("SELECT $1");
  e.set_time_unix_us(5);
  v1::StatementEvent later = e;
  later.set_time_unix_us(6);
  REQUIRE(h.store().InsertStatementEvents("edge-1", "boot", {{1, e}, {2, later}}).ok());
  v1::ListAuditRequest req;
  req.set_limit(1);
  v1::ListAuditResponse resp;
  REQUIRE(h.stub().ListAudit(AdminHarness::Context().get(), req, &resp).ok());
  REQUIRE(resp.rows_size() == 1);
  CHECK(resp.rows(0).time_unix_us() == 6);
  CHECK(resp.rows(0).principal() == "bot");
}

TEST_CASE("a grant gets the one trusted issuer; with several it must name one", "[admin][grants][issuers]") {
  SECTION("one trusted issuer: filled in") {
    AdminHarness h;
    CreateAgent(h, "edge-1");
    v1::Connection conn;
    REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &conn).ok());
    v1::Grant g;
    REQUIRE(h.stub().CreateGrant(AdminHarness::Context().get(), GrantRequest("bot"), &g).ok());
    CHECK(g.issuer() == testing::kIssuer);
    auto stored = h.store().ListGrants({});
    REQUIRE(stored.ok());
    CHECK((*stored)[0].issuer() == testing::kIssuer);
  }
  SECTION("several trusted issuers: required, and must be one of them") {
    AdminHarness h(grpc::InsecureServerCredentials(), grpc::InsecureChannelCredentials(),
                   {testing::kIssuer, "https://second.example"});
    CreateAgent(h, "edge-1");
    v1::Connection conn;
    REQUIRE(h.stub().CreateConnection(AdminHarness::Context().get(), ConnectionRequest(), &conn).ok());
    v1::Grant g;
    const grpc::Status missing = h.stub().CreateGrant(AdminHarness::Context().get(), GrantRequest("bot"), &g);
    CHECK(missing.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(missing.error_message().find("--issuer") != std::string::npos);
    CHECK(missing.error_message().find("https://second.example") != std::string::npos);
    v1::CreateGrantRequest named = GrantRequest("bot");
    named.mutable_grant()->set_issuer("https://second.example");
    REQUIRE(h.stub().CreateGrant(AdminHarness::Context().get(), named, &g).ok());
    CHECK(g.issuer() == "https://second.example");
    v1::ListGrantsRequest filter;
    filter.set_principal("bot");
    filter.set_issuer(testing::kIssuer);
    v1::ListGrantsResponse list;
    REQUIRE(h.stub().ListGrants(AdminHarness::Context().get(), filter, &list).ok());
    CHECK(list.grants_size() == 0);
  }
}

TEST_CASE("deleting an agent tells the live side to close its streams", "[admin][agents]") {
  AdminHarness h;
  CreateAgent(h, "edge-9");
  h.live().SetOnline("edge-9");
  v1::DeleteAgentRequest del;
  del.set_name("edge-9");
  v1::DeleteAgentResponse ignored;
  REQUIRE(h.stub().DeleteAgent(AdminHarness::Context().get(), del, &ignored).ok());
  CHECK(h.live().DeletedAgents() == std::set<std::string>{"edge-9"});
  // A refused delete (unknown agent) closes nothing.
  del.set_name("edge-404");
  CHECK(h.stub().DeleteAgent(AdminHarness::Context().get(), del, &ignored).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(h.live().DeletedAgents() == std::set<std::string>{"edge-9"});
}

TEST_CASE("audit and session lists stay under the response bound and say when they were cut", "[admin][audit]") {
  AdminHarness h;
  v1::SessionRecord s;
  s.set_session_id("s1");
  s.set_principal("bot");
  s.set_connection("app");
  s.set_agent("edge-1");
  s.set_application_name(std::string(256, 'a'));
  REQUIRE(h.store().InsertSession(s).ok());
  // 16 KiB statements, the most an event may store: 400 of them are about 6.5 MiB.
  std::vector<std::pair<uint64_t, v1::StatementEvent>> events;
  for (uint64_t seq = 1; seq <= 400; ++seq) {
    v1::StatementEvent e;
    e.set_session_id("s1");
    e.set_time_unix_us(static_cast<int64_t>(seq));
    e.set_statement(std::string(16 * 1024, 'q'));
    events.emplace_back(seq, e);
  }
  REQUIRE(h.store().InsertStatementEvents("edge-1", "boot", events).ok());
  v1::ListAuditRequest req;
  req.set_limit(1000);
  v1::ListAuditResponse resp;
  const grpc::Status status = h.stub().ListAudit(AdminHarness::Context().get(), req, &resp);
  REQUIRE(status.ok());  // a default gRPC client (4 MiB receive limit) reads it
  CHECK(resp.truncated());
  CHECK(resp.rows_size() > 100);
  CHECK(resp.rows_size() < 400);
  CHECK(resp.ByteSizeLong() <= AdminServiceImpl::kMaxListResponseBytes);
  CHECK(resp.rows(0).time_unix_us() == 400);  // the newest come first

  req.set_limit(10);
  resp.Clear();
  REQUIRE(h.stub().ListAudit(AdminHarness::Context().get(), req, &resp).ok());
  CHECK_FALSE(resp.truncated());
  CHECK(resp.rows_size() == 10);

  v1::ListSessionsResponse sessions;
  REQUIRE(h.stub().ListSessions(AdminHarness::Context().get(), {}, &sessions).ok());
  CHECK_FALSE(sessions.truncated());
  CHECK(sessions.sessions_size() == 1);
}

v1::RevokePrincipalRequest RevokeRequest(const std::string& principal, const std::string& group = "",
                                         const std::string& reason = "") {
  v1::RevokePrincipalRequest req;
  req.set_principal(principal);
  req.set_group(group);
  req.set_reason(reason);
  return req;
}

TEST_CASE("principals and groups are revoked by the calling admin, listed and restored", "[admin][revoke]") {
  AdminHarness h;
  h.live().SetSessionsToEnd(2);
  v1::Revocation revoked;
  REQUIRE(h.stub()
              .RevokePrincipal(AdminHarness::Context().get(), RevokeRequest("bot", "", "left the team"), &revoked)
              .ok());
  CHECK(revoked.principal() == "bot");
  CHECK(revoked.issuer() == testing::kIssuer);  // the one trusted issuer, filled in
  CHECK(revoked.revoked_by() == "admin.key");
  CHECK(revoked.reason() == "left the team");
  CHECK(revoked.sessions_ended() == 2);  // what the live side reported
  CHECK(revoked.revoked_unix_ms() > 0);
  // The live side heard of it, with the issuer resolved, after it was stored.
  const std::vector<v1::Revocation> told = h.live().Revocations();
  REQUIRE(told.size() == 1);
  CHECK(told[0].principal() == "bot");
  CHECK(told[0].issuer() == testing::kIssuer);

  v1::Revocation group;
  REQUIRE(h.stub().RevokePrincipal(AdminHarness::Context().get(), RevokeRequest("", "contractors"), &group).ok());
  CHECK(group.group() == "contractors");

  // Revoking again keeps the first record and says so.
  v1::Revocation again;
  const grpc::Status twice =
      h.stub().RevokePrincipal(AdminHarness::Context().get(), RevokeRequest("bot", "", "other"), &again);
  CHECK(twice.error_code() == grpc::StatusCode::ALREADY_EXISTS);
  CHECK(twice.error_message().find("already revoked") != std::string::npos);

  v1::ListRevocationsResponse list;
  REQUIRE(h.stub().ListRevocations(AdminHarness::Context().get(), {}, &list).ok());
  REQUIRE(list.revocations_size() == 2);
  CHECK(list.revocations(0).principal() == "bot");
  CHECK(list.revocations(0).reason() == "left the team");
  CHECK(list.revocations(1).group() == "contractors");

  v1::RestorePrincipalRequest restore;
  restore.set_principal("bot");
  v1::RestorePrincipalResponse restored;
  REQUIRE(h.stub().RestorePrincipal(AdminHarness::Context().get(), restore, &restored).ok());
  const grpc::Status not_revoked = h.stub().RestorePrincipal(AdminHarness::Context().get(), restore, &restored);
  CHECK(not_revoked.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(not_revoked.error_message().find("is not revoked") != std::string::npos);
  list.Clear();
  REQUIRE(h.stub().ListRevocations(AdminHarness::Context().get(), {}, &list).ok());
  REQUIRE(list.revocations_size() == 1);
  CHECK(list.revocations(0).group() == "contractors");
}

TEST_CASE("bad revocations are refused with INVALID_ARGUMENT and nothing is stored", "[admin][revoke][validation]") {
  AdminHarness h;
  struct Case {
    const char* what;
    v1::RevokePrincipalRequest req;
    const char* message;
  };
  v1::RevokePrincipalRequest untrusted = RevokeRequest("bot");
  untrusted.set_issuer("https://evil.example");
  const std::vector<Case> cases = {
      {"neither", RevokeRequest(""), "exactly one"},
      {"both", RevokeRequest("bot", "ops"), "exactly one"},
      {"space in the name", RevokeRequest("bad name"), "principal"},
      {"newline in the reason", RevokeRequest("bot", "", "line one\nline two"), "control characters"},
      {"escape in the reason", RevokeRequest("bot", "", "\x1b[2Jcleared"), "control characters"},
      {"reason too long", RevokeRequest("bot", "", std::string(501, 'r')), "longer than 500"},
      {"untrusted issuer", untrusted, "not trusted"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    v1::Revocation resp;
    const grpc::Status status = h.stub().RevokePrincipal(AdminHarness::Context().get(), c.req, &resp);
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(status.error_message().find(c.message) != std::string::npos);
  }
  CHECK(h.live().Revocations().empty());
  auto stored = h.store().ListRevocations();
  REQUIRE(stored.ok());
  CHECK(stored->empty());
  // Without admin credentials nothing happens either.
  v1::Revocation resp;
  CHECK(h.stub().RevokePrincipal(AdminHarness::Context("").get(), RevokeRequest("bot"), &resp).error_code() ==
        grpc::StatusCode::UNAUTHENTICATED);
  CHECK(h.live().Revocations().empty());
}

}  // namespace
}  // namespace pgward::admin
