// The gateway's session path end to end in one process: a caller on the Postgres endpoint, the
// broker, and a fake agent on AgentService (pairing, refusals, kill, agent loss, open timeout,
// agent deletion).
#include <thread>
#include <catch2/catch.hpp>

#include <future>

#include "common/pgwire/messages.h"
#include "tests/unit/gateway/fake_agent.h"
#include "tests/unit/gateway/pg_wire_client.h"
#include "tests/unit/gateway/relay_harness.h"

namespace pgward::gateway::testing {
namespace {

// A caller logging in on its own thread, since the login waits for the agent's side.
struct PendingLogin {
  PgWireClient client;
  std::future<LoginOutcome> outcome;

  PendingLogin(RelayHarness& gateway, const std::string& token) {
    REQUIRE(client.Connect(gateway.pg_port()));
    outcome = std::async(std::launch::async, [this, token] { return client.Login(kConnection, token); });
  }
  LoginOutcome Get() {
    REQUIRE(outcome.wait_for(std::chrono::seconds(15)) == std::future_status::ready);
    return outcome.get();
  }
};

// A caller whose session is live, paired with the fake agent's Session stream.
struct LiveCall {
  std::string session_id;
  PendingLogin login;
  std::unique_ptr<SessionCall> agent_side;
  LoginOutcome outcome;

  LiveCall(RelayHarness& gateway, FakeAgent& agent) : login(gateway, gateway.Token()) {
    auto grant = agent.NextGrant();
    REQUIRE(grant);
    session_id = grant->session_id();
    agent_side = agent.OpenSession(session_id);
    outcome = login.Get();
    REQUIRE(outcome.ready);
  }
};

std::string QueryBytes(const std::string& sql) {
  std::string out;
  pgwire::AppendQuery(out, sql);
  return out;
}

// What the agent received from the caller until it holds `size` bytes.
std::string AgentReceives(SessionCall& call, size_t size) {
  std::string received;
  while (received.size() < size) {
    auto frame = call.Next();
    if (!frame) break;
    received += frame->data();
  }
  return received;
}

// `refused` was ended with `code`, and the waiting caller was not paired with it: the agent's
// proper Session stream for `session_id` still is, and the caller's login completes.
void RequireRefusedThenPaired(SessionCall& refused, grpc::StatusCode code, FakeAgent& agent, PendingLogin& login,
                              const std::string& session_id) {
  auto status = refused.WaitEnd();
  REQUIRE(status);
  CHECK(status->error_code() == code);
  auto proper = agent.OpenSession(session_id);
  CHECK(login.Get().ready);
}

// The (SQLSTATE, message) of the next message the caller receives, which must be an error.
std::pair<std::string, std::string> NextError(PgWireClient& client) {
  auto message = client.Read();
  REQUIRE(message);
  return ErrorOf(*message);
}

pgward::v1::SessionFrame DataFrame(const std::string& data) {
  pgward::v1::SessionFrame frame;
  frame.set_data(data);
  frame.set_message_boundary(true);
  return frame;
}

}  // namespace

TEST_CASE("a caller's session pairs with the agent's Session stream and bytes flow both ways", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());

  PendingLogin login(gateway, gateway.Token());
  auto grant = agent.NextGrant();
  REQUIRE(grant);
  CHECK(grant->principal() == kPrincipal);
  CHECK(grant->issuer() == kIssuer);
  CHECK(grant->connection() == kConnection);
  CHECK(grant->target().database() == "app");
  CHECK(grant->policy().mode() == pgward::v1::MODE_READ_ONLY);
  CHECK(grant->application_name() == "relay-test");
  auto stream = agent.OpenSession(grant->session_id());
  LoginOutcome outcome = login.Get();
  REQUIRE(outcome.ready);
  // The upstream's parameters reach the caller; the cancel key is the gateway's own.
  CHECK(outcome.parameters["server_version"] == "15.99-fake");
  CHECK(outcome.cancel_pid != 0);
  CHECK(gateway.broker().ActiveSessions(kAgent) == 1);
  CHECK(gateway.SessionRecord(grant->session_id()).ended_unix_ms() == 0);

  // Caller to agent: the bytes arrive unchanged.
  const std::string query = QueryBytes("SELECT 1");
  REQUIRE(login.client.Send(query));
  CHECK(AgentReceives(*stream, query.size()) == query);

  // Agent to caller: two messages in one frame arrive as two messages.
  std::string reply;
  pgwire::AppendReadyForQuery(reply, 'T');
  pgwire::AppendReadyForQuery(reply, 'I');
  REQUIRE(stream->Write(DataFrame(reply)));
  auto first = login.client.Read();
  auto second = login.client.Read();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->type == 'Z');
  CHECK(first->body == "T");
  CHECK(second->body == "I");

  // The caller leaves: the agent's stream ends cleanly and the session is recorded as ended.
  login.client.Close();
  auto status = stream->WaitEnd();
  REQUIRE(status);
  CHECK(status->ok());
  REQUIRE(RelayHarness::WaitUntil([&] { return gateway.SessionRecord(grant->session_id()).ended_unix_ms() != 0; }));
  CHECK(gateway.SessionRecord(grant->session_id()).end_reason() == "client_disconnect");
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
}

TEST_CASE("an agent that ends its session stream cleanly closes the caller's connection without an error", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  LiveCall call(gateway, agent);

  // As the agent does after the caller's Terminate: a last frame naming why, then half-close.
  pgward::v1::SessionFrame last;
  last.set_message_boundary(true);
  last.set_end_reason("client_terminate");
  REQUIRE(call.agent_side->Write(last));
  call.agent_side->WritesDone();
  auto message = call.login.client.Read();
  CHECK_FALSE(message);
  CHECK(call.login.client.eof());
  REQUIRE(RelayHarness::WaitUntil([&] { return gateway.SessionRecord(call.session_id).ended_unix_ms() != 0; }));
  CHECK(gateway.SessionRecord(call.session_id).end_reason() == "client_terminate");
}

TEST_CASE("a failed upstream login reaches the caller as FATAL 08006 with the agent's message", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  PendingLogin login(gateway, gateway.Token());
  auto grant = agent.NextGrant();
  REQUIRE(grant);
  auto stream = agent.OpenSession(grant->session_id(), false, "upstream refused the password");
  LoginOutcome outcome = login.Get();
  CHECK_FALSE(outcome.ready);
  CHECK(outcome.sqlstate == "08006");
  CHECK(outcome.message == "pgward: upstream refused the password");
  auto status = stream->WaitEnd();
  REQUIRE(status);
  CHECK(status->ok());
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
}

TEST_CASE("a Session stream for a session nobody waits for is refused with NOT_FOUND", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  auto stream = agent.OpenSession("s_no_such_session");
  auto status = stream->WaitEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("a Session stream whose first frame is not `opened` is refused with INVALID_ARGUMENT", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  PendingLogin login(gateway, gateway.Token());
  auto grant = agent.NextGrant();
  REQUIRE(grant);
  auto stream = agent.OpenSessionStream(kAgent, kAgentToken);
  REQUIRE(stream->Write(DataFrame(QueryBytes("SELECT 1"))));
  RequireRefusedThenPaired(*stream, grpc::StatusCode::INVALID_ARGUMENT, agent, login, grant->session_id());
}

TEST_CASE("a Session stream for another agent's session is refused with NOT_FOUND", "[relay]") {
  RelayHarness gateway;
  REQUIRE(gateway.store().CreateAgent("agent-b", crypto::HashToken("agent-b-token")).ok());
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  FakeAgent other(gateway.channel(), "agent-b", "agent-b-token");
  REQUIRE(agent.Connect());
  PendingLogin login(gateway, gateway.Token());
  auto grant = agent.NextGrant();
  REQUIRE(grant);
  auto stolen = other.OpenSession(grant->session_id());
  RequireRefusedThenPaired(*stolen, grpc::StatusCode::NOT_FOUND, agent, login, grant->session_id());
}

TEST_CASE("Control and Session streams without the agent's token are refused with UNAUTHENTICATED", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  const auto [name, token] = GENERATE(std::pair<std::string, std::string>{kAgent, ""},
                                      std::pair<std::string, std::string>{kAgent, "wrong-token"},
                                      std::pair<std::string, std::string>{"", kAgentToken},
                                      std::pair<std::string, std::string>{"agent-unknown", kAgentToken});
  CAPTURE(name, token);
  SECTION("Control") {
    auto control = agent.OpenControl(name, token);
    pgward::v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_name(name);
    hello.mutable_hello()->set_boot_id("boot");
    control->Write(hello);
    auto status = control->WaitEnd();
    REQUIRE(status);
    CHECK(status->error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK_FALSE(control->Next(std::chrono::milliseconds(0)));  // no welcome
    CHECK_FALSE(gateway.registry().Online(kAgent));
  }
  SECTION("Session") {
    // Even for a session that is really waiting: the grant is not the stream's to claim.
    REQUIRE(agent.Connect());
    PendingLogin login(gateway, gateway.Token());
    auto grant = agent.NextGrant();
    REQUIRE(grant);
    auto stream = agent.OpenSessionStream(name, token);
    pgward::v1::SessionFrame first;
    first.mutable_opened()->set_session_id(grant->session_id());
    first.mutable_opened()->set_ok(true);
    stream->Write(first);
    RequireRefusedThenPaired(*stream, grpc::StatusCode::UNAUTHENTICATED, agent, login, grant->session_id());
  }
}

TEST_CASE("an admin kill sends EndSession to the agent and ends the caller's session with FATAL 57P01", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  LiveCall call(gateway, agent);

  REQUIRE(gateway.broker().KillSession(call.session_id).ok());
  auto end = agent.NextControl(pgward::v1::GatewayMessage::kEndSession);
  REQUIRE(end);
  CHECK(end->end_session().session_id() == call.session_id);
  CHECK(end->end_session().reason() == "killed");
  CHECK(end->end_session().sqlstate() == "57P01");
  auto [sqlstate, text] = NextError(call.login.client);
  CHECK(sqlstate == "57P01");
  CHECK(text == "pgward: the session was terminated by an administrator");
  CHECK(call.login.client.WaitForClose());
  // The agent's Session stream is cancelled, not left open.
  auto status = call.agent_side->WaitEnd();
  REQUIRE(status);
  CHECK_FALSE(status->ok());
  REQUIRE(RelayHarness::WaitUntil([&] { return gateway.SessionRecord(call.session_id).ended_unix_ms() != 0; }));
  CHECK(gateway.SessionRecord(call.session_id).end_reason() == "killed");
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
  // Once ended it is no longer live.
  CHECK(absl::IsNotFound(gateway.broker().KillSession(call.session_id)));
}

TEST_CASE("a cancel request with the session's key reaches the agent; a forged key does nothing", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  LiveCall call(gateway, agent);

  auto send_cancel = [&](int32_t pid, uint32_t key) {
    PgWireClient canceller;
    REQUIRE(canceller.Connect(gateway.pg_port()));
    std::string out;
    pgwire::AppendCancelRequest(out, pid, key);
    REQUIRE(canceller.Send(out));
    CHECK(canceller.WaitForClose());  // the gateway answers a cancel request by closing
  };
  send_cancel(call.outcome.cancel_pid, call.outcome.cancel_key + 1);
  send_cancel(call.outcome.cancel_pid, call.outcome.cancel_key);
  auto cancel = agent.NextControl(pgward::v1::GatewayMessage::kCancelSession);
  REQUIRE(cancel);
  CHECK(cancel->cancel_session().session_id() == call.session_id);
  // Only the genuine one: nothing else follows.
  CHECK_FALSE(agent.NextControl(pgward::v1::GatewayMessage::kCancelSession, std::chrono::milliseconds(200)));
  CHECK(gateway.broker().ActiveSessions(kAgent) == 1);  // a cancel ends no session
}

TEST_CASE("when the agent goes away its live sessions end with FATAL 08006", "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  LiveCall call(gateway, agent);

  // A dying agent process: every stream it had breaks, without a last frame.
  call.agent_side->Cancel();
  agent.DropControl();
  auto [sqlstate, text] = NextError(call.login.client);
  CHECK(sqlstate == "08006");
  CHECK(call.login.client.WaitForClose());
  REQUIRE(RelayHarness::WaitUntil([&] { return gateway.SessionRecord(call.session_id).ended_unix_ms() != 0; }));
  CHECK(gateway.SessionRecord(call.session_id).end_reason() == "agent_lost");
  REQUIRE(RelayHarness::WaitUntil([&] { return !gateway.registry().Online(kAgent); }));
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
}

TEST_CASE("a caller waiting for its session fails with FATAL 08006 as soon as the agent's control stream drops",
          "[relay]") {
  // The open timeout is far away: the failure must come from the agent going offline.
  RelayHarness gateway(std::chrono::seconds(60));
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  PendingLogin login(gateway, gateway.Token());
  REQUIRE(agent.NextGrant());
  const auto dropped = std::chrono::steady_clock::now();
  agent.DropControl();
  LoginOutcome outcome = login.Get();
  CHECK(std::chrono::steady_clock::now() - dropped < std::chrono::seconds(5));
  CHECK_FALSE(outcome.ready);
  CHECK(outcome.sqlstate == "08006");
  CHECK_THAT(outcome.message, Catch::Contains("went offline before it opened the session"));
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
}

TEST_CASE("a pending open survives the agent's control stream being replaced by a reconnect of the same process",
          "[relay]") {
  RelayHarness gateway(std::chrono::seconds(60));
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  PendingLogin login(gateway, gateway.Token());
  auto grant = agent.NextGrant();
  REQUIRE(grant);
  auto old = agent.Reconnect();
  REQUIRE(old);
  auto status = old->WaitEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::ABORTED);  // replaced, not offline
  auto stream = agent.OpenSession(grant->session_id());
  CHECK(login.Get().ready);
  CHECK(gateway.broker().ActiveSessions(kAgent) == 1);
}

TEST_CASE("an open fails with FATAL 08006 when the agent never opens the session stream", "[relay]") {
  RelayHarness gateway(std::chrono::milliseconds(300));
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  PendingLogin login(gateway, gateway.Token());
  auto grant = agent.NextGrant();
  REQUIRE(grant);
  LoginOutcome outcome = login.Get();
  CHECK_FALSE(outcome.ready);
  CHECK(outcome.sqlstate == "08006");
  CHECK_THAT(outcome.message, Catch::Contains("did not open the session"));
  // A stream that comes too late finds nobody waiting.
  auto late = agent.OpenSession(grant->session_id());
  auto status = late->WaitEnd();
  REQUIRE(status);
  CHECK(status->error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
}

TEST_CASE("deleting an agent ends its control stream and live sessions with 57P01 and fails its pending opens",
          "[relay]") {
  RelayHarness gateway;
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  LiveCall call(gateway, agent);
  PendingLogin waiting(gateway, gateway.Token());
  REQUIRE(agent.NextGrant());

  // As AdminService's DeleteAgent does: the store first, then the live view. The store refuses
  // to delete an agent a connection uses, so the connection goes first, straight in the store:
  // the broker hears of nothing but the agent's deletion.
  REQUIRE(gateway.store().DeleteConnection(kConnection).ok());
  REQUIRE(gateway.store().DeleteAgent(kAgent).ok());
  gateway.broker().AgentDeleted(kAgent);

  auto control_status = agent.control().WaitEnd();
  REQUIRE(control_status);
  CHECK(control_status->error_code() == grpc::StatusCode::UNAUTHENTICATED);
  auto [sqlstate, text] = NextError(call.login.client);
  CHECK(sqlstate == "57P01");
  CHECK(text == "pgward: the session ended because its agent was deleted by an administrator");
  CHECK(call.login.client.WaitForClose());
  LoginOutcome pending = waiting.Get();
  CHECK_FALSE(pending.ready);
  CHECK(pending.sqlstate == "08006");
  CHECK_THAT(pending.message, Catch::Contains("was deleted"));
  REQUIRE(RelayHarness::WaitUntil([&] { return gateway.SessionRecord(call.session_id).ended_unix_ms() != 0; }));
  CHECK(gateway.SessionRecord(call.session_id).end_reason() == "agent_deleted");
  CHECK(gateway.broker().ActiveSessions(kAgent) == 0);
}

TEST_CASE("heartbeats sent faster than the interval update the session count but not the store", "[relay]") {
  RelayHarness gateway;  // heartbeat interval 10 s: at most one store check a second per stream
  FakeAgent agent(gateway.channel(), kAgent, kAgentToken);
  REQUIRE(agent.Connect());
  auto seen = [&] {
    auto agents = gateway.store().ListAgents();
    REQUIRE(agents.ok());
    for (const auto& a : *agents) {
      if (a.name() == kAgent) return a.last_seen_unix_ms();
    }
    FAIL("agent missing from the store");
    return int64_t{0};
  };
  const int64_t at_hello = seen();
  const auto start = std::chrono::steady_clock::now();
  for (uint32_t i = 1; i <= 300; ++i) {
    pgward::v1::AgentMessage heartbeat;
    heartbeat.mutable_heartbeat()->set_active_sessions(i);
    REQUIRE(agent.control().Write(heartbeat));
  }
  // Every one was read, in order: the last count is the one the gateway shows.
  const auto deadline = start + std::chrono::seconds(10);
  while (gateway.registry().ActiveSessions(kAgent) != 300 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(gateway.registry().ActiveSessions(kAgent) == 300);
  const auto took = std::chrono::steady_clock::now() - start;
  // Within a second of the hello no heartbeat did store work (on a machine so slow that the
  // burst took longer, one may have: then at most one store write per second is what holds).
  if (took < std::chrono::milliseconds(900)) {
    CHECK(seen() == at_hello);
  } else {
    WARN("the heartbeat burst took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                     << " ms; last seen may have moved once");
  }
}

}  // namespace pgward::gateway::testing
