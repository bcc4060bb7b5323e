// The agent's session relay end to end in one process: SessionManager starts the real
// AgentSession, which logs in to a scripted Postgres and relays over a real gRPC Session
// stream to a fake gateway (tests/unit/agent/session_harness.h). Pairing, relay, refusal,
// kill, loss of either peer, and the event backlog's hold on the caller.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/wire_writer.h"
#include "tests/unit/agent/session_harness.h"

namespace pgward::agent::testing {
namespace {

using pgward::v1::SessionFrame;

const absl::Duration kWait = absl::Seconds(10);

std::string Query(std::string_view sql) {
  std::string out;
  pgwire::AppendQuery(out, sql);
  return out;
}

// Parse, Bind and Execute of `sql` as the unnamed statement and portal, then Sync.
std::string ExtendedBatch(std::string_view sql) {
  std::string out;
  size_t at = pgwire::BeginMessage(out, 'P');
  pgwire::AppendCString(out, "");
  pgwire::AppendCString(out, sql);
  pgwire::AppendInt16(out, 0);
  pgwire::FinishMessage(out, at);
  at = pgwire::BeginMessage(out, 'B');
  pgwire::AppendCString(out, "");
  pgwire::AppendCString(out, "");
  pgwire::AppendInt16(out, 0);
  pgwire::AppendInt16(out, 0);
  pgwire::AppendInt16(out, 0);
  pgwire::FinishMessage(out, at);
  at = pgwire::BeginMessage(out, 'E');
  pgwire::AppendCString(out, "");
  pgwire::AppendInt32(out, 0);
  pgwire::FinishMessage(out, at);
  return out;
}

std::string Sync() {
  std::string out;
  pgwire::AppendSync(out);
  return out;
}

std::string Terminate() {
  std::string out;
  pgwire::AppendTerminate(out);
  return out;
}

std::string ReadyForQuery(char status) {
  std::string out;
  pgwire::AppendReadyForQuery(out, status);
  return out;
}

std::string ValueOf(const std::vector<std::pair<std::string, std::string>>& parameters, std::string_view name) {
  for (const auto& [key, value] : parameters) {
    if (key == name) return value;
  }
  return "<absent>";
}

// One whole backend message at the front of `bytes`: its type and body; nullopt if `bytes`
// does not start with a whole message.
std::optional<std::pair<char, std::string>> TakeMessage(std::string& bytes) {
  if (bytes.size() < 5) return std::nullopt;
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data() + 1);
  const size_t length = (size_t{u[0]} << 24) | (size_t{u[1]} << 16) | (size_t{u[2]} << 8) | size_t{u[3]};
  if (length < 4 || bytes.size() < 1 + length) return std::nullopt;
  std::pair<char, std::string> message{bytes[0], bytes.substr(5, length - 4)};
  bytes.erase(0, 1 + length);
  return message;
}

// The ErrorResponse at the front of `bytes`, taken off it (the test fails if there is none).
struct TakenError {
  std::string severity, sqlstate, message;
};
TakenError TakeError(std::string& bytes) {
  auto error = TakeMessage(bytes);
  REQUIRE(error);
  REQUIRE(error->first == 'E');
  auto fields = pgwire::DecodeErrorOrNotice(error->second);
  REQUIRE(fields.ok());
  return {std::string(fields->severity), std::string(fields->sqlstate), std::string(fields->message)};
}

// The data of the agent's frames up to and including the one that ends with a ReadyForQuery
// (what a caller waits for after a Query); each such frame must end on a message boundary.
std::string ReadUntilReady(FakeGateway::Call& call) {
  std::string data;
  while (data.size() < 6 || data[data.size() - 6] != 'Z') {
    std::optional<SessionFrame> frame = call.NextFrame(kWait);
    if (!frame) return data + "<no more frames>";
    CHECK(frame->end_reason().empty());
    data += frame->data();
    if (frame->data().size() >= 6 && frame->data()[frame->data().size() - 6] == 'Z') {
      CHECK(frame->message_boundary());
    }
  }
  return data;
}

// The agent's frames until the one with an end_reason: their data and that reason.
std::pair<std::string, std::string> ReadUntilEnd(FakeGateway::Call& call) {
  std::string data;
  for (;;) {
    std::optional<SessionFrame> frame = call.NextFrame(kWait);
    if (!frame) return {data, "<stream ended without an end_reason>"};
    data += frame->data();
    if (!frame->end_reason().empty()) {
      CHECK(frame->message_boundary());
      return {data, frame->end_reason()};
    }
  }
}

// Starts a session for `grant` and returns its gateway stream once the agent has announced
// the session as opened (the first frame), checking that announcement.
std::shared_ptr<FakeGateway::Call> OpenSession(SessionHarness& h, const pgward::v1::SessionGrant& grant) {
  h.sessions().Start(grant);
  std::shared_ptr<FakeGateway::Call> call = h.gateway.NextCall(kWait);
  REQUIRE(call);
  std::optional<SessionFrame> first = call->NextFrame(kWait);
  REQUIRE(first);
  REQUIRE(first->has_opened());
  CHECK(first->opened().ok());
  CHECK(first->opened().session_id() == grant.session_id());
  CHECK(first->data().empty());
  return call;
}

}  // namespace

TEST_CASE("a session logs in upstream, opens its stream, relays a query and its answer and records the statement",
          "[session]") {
  SessionHarness h;
  const auto grant = h.Grant("s-relay", pgward::v1::MODE_READ_ONLY);
  h.sessions().Start(grant);

  // The upstream login carries the principal and the pinned settings.
  const auto startup = h.postgres.StartupParameters(0, kWait);
  CHECK(ValueOf(startup, "user") == "app");
  CHECK(ValueOf(startup, "database") == "shop");
  CHECK(ValueOf(startup, "application_name") == "pgward:report-bot");
  CHECK_THAT(ValueOf(startup, "options"), Catch::Contains("-c pgward.session_id=s-relay") &&
                                              Catch::Contains("-c default_transaction_read_only=on"));

  // The stream is opened after the login, with the agent's credentials, and `opened` comes first.
  std::shared_ptr<FakeGateway::Call> call = h.gateway.NextCall(kWait);
  REQUIRE(call);
  CHECK(call->metadata("authorization") == std::string("Bearer ") + kAgentToken);
  CHECK(call->metadata("x-pgward-agent") == kAgentName);
  std::optional<SessionFrame> opened = call->NextFrame(kWait);
  REQUIRE(opened);
  REQUIRE(opened->has_opened());
  CHECK(opened->opened().ok());
  CHECK(opened->opened().session_id() == "s-relay");
  CHECK(opened->opened().upstream_pid() == FakePostgres::kFirstPid);
  std::vector<std::pair<std::string, std::string>> reported;
  for (const auto& p : opened->opened().parameters()) reported.emplace_back(p.name(), p.value());
  CHECK(ValueOf(reported, "server_version") == "15.4");
  CHECK(ValueOf(reported, "application_name") == "pgward:report-bot");

  call->Send(Query("SELECT 1"));
  CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
  CHECK(h.postgres.Queries() == std::vector<std::string>{"SELECT 1"});

  REQUIRE(h.sink.WaitForStatements(1, kWait));
  const pgward::v1::StatementEvent event = h.sink.statements().at(0);
  CHECK(event.session_id() == "s-relay");
  CHECK(event.protocol() == "simple");
  CHECK(event.statement() == "SELECT $1");  // normalized: literals never reach the audit trail
  CHECK(event.command_tag() == "SELECT 1");
  CHECK(event.rows() == 1);
  CHECK(event.sqlstate().empty());
  CHECK(event.decision() == "allowed");
  CHECK(event.rule() == "g-7");
  CHECK(event.outcome() == "ok");
  // The statement was spooled as an intent before it went upstream, and its event completes it.
  const auto intents = h.sink.intents();
  REQUIRE(intents.size() == 1);
  CHECK(intents[0].first == "s-relay");
  CHECK(intents[0].second.intent_id() == 1);
  CHECK(intents[0].second.statement().statement() == "SELECT $1");
  CHECK(h.sink.links().at(0).intent_id == 1);
  CHECK(h.sink.links().at(0).settled_through == 1);

  // The caller's Terminate ends the session: the agent says goodbye upstream and half-closes.
  call->Send(Terminate());
  auto [rest, reason] = ReadUntilEnd(*call);
  CHECK(rest.empty());
  CHECK(reason == "client_terminate");
  CHECK(call->WaitForAgentDone(kWait));
  const auto ended = h.sink.WaitForEnded(kWait);
  REQUIRE(ended);
  CHECK(ended->session_id() == "s-relay");
  CHECK(ended->reason() == "client_terminate");
  CHECK(h.postgres.WaitUntilAllClosed(kWait));
  CHECK(h.postgres.terminated_cleanly(0));
  CHECK(call->WaitForEnd(kWait));
  CHECK(h.WaitForNoSessions(kWait));
  CHECK(h.sink.statements().size() == 1);
}

TEST_CASE("a write under a read-only grant is answered with 42501 and never reaches Postgres", "[session]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-refused", pgward::v1::MODE_READ_ONLY));

  call->Send(Query("INSERT INTO orders VALUES (1)"));
  std::string reply = ReadUntilReady(*call);
  const TakenError error = TakeError(reply);
  CHECK(error.severity == "ERROR");
  CHECK(error.sqlstate == "42501");
  CHECK_THAT(error.message, Catch::Contains("statement refused"));
  CHECK(reply == ReadyForQuery('I'));  // the session goes on, idle

  // In its place the server got a statement that fails (so that it fails a transaction, as a
  // server error would); its error stayed in the agent.
  REQUIRE(h.postgres.Queries().size() == 1);
  CHECK_THAT(h.postgres.Queries().at(0), Catch::Contains("pg_catalog.int4div(1, 0)"));
  CHECK(h.postgres.Syncs() == 0);
  REQUIRE(h.sink.WaitForStatements(1, kWait));
  const pgward::v1::StatementEvent event = h.sink.statements().at(0);
  CHECK(event.decision() == "denied");
  CHECK(event.sqlstate() == "42501");
  CHECK(event.statement() == "INSERT INTO orders VALUES ($1)");
  CHECK(event.rows() == -1);
  CHECK(event.outcome() == "error");
  CHECK(h.sink.intents().empty());  // it never went upstream

  // The refusal is per statement: the next allowed one runs.
  call->Send(Query("SELECT 1"));
  CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
  CHECK(h.postgres.Queries().size() == 2);
  CHECK(h.postgres.Queries().back() == "SELECT 1");
}

TEST_CASE("a refused statement fails the caller's open transaction, as a server error would", "[session]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-refused-tx", pgward::v1::MODE_READ_ONLY));
  call->Send(Query("BEGIN"));
  CHECK_THAT(ReadUntilReady(*call), Catch::EndsWith(ReadyForQuery('T')));

  call->Send(Query("DELETE FROM orders"));
  std::string reply = ReadUntilReady(*call);
  const TakenError error = TakeError(reply);
  CHECK(error.sqlstate == "42501");
  CHECK_THAT(error.message, Catch::Contains("statement refused"));
  CHECK(reply == ReadyForQuery('E'));  // the server's word: its transaction failed

  // Later statements are the server's to refuse, until the transaction ends; COMMIT rolls back.
  call->Send(Query("SELECT 1"));
  reply = ReadUntilReady(*call);
  CHECK(TakeError(reply).sqlstate == "25P02");
  CHECK(reply == ReadyForQuery('E'));
  call->Send(Query("COMMIT"));
  reply = ReadUntilReady(*call);
  CHECK_THAT(reply, Catch::Contains("ROLLBACK"));
  CHECK_THAT(reply, Catch::EndsWith(ReadyForQuery('I')));
  REQUIRE(h.sink.WaitForStatements(4, kWait));
  CHECK(h.sink.statements().at(1).decision() == "denied");
  CHECK(h.sink.statements().at(2).sqlstate() == "25P02");
}

TEST_CASE("a refused statement of an extended batch fails the caller's open transaction", "[session]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-refused-ext", pgward::v1::MODE_READ_ONLY));
  call->Send(Query("BEGIN"));
  CHECK_THAT(ReadUntilReady(*call), Catch::EndsWith(ReadyForQuery('T')));

  // An allowed statement, then a refused one, then one more, in one batch.
  call->Send(ExtendedBatch("SELECT 1") + ExtendedBatch("DELETE FROM orders") + ExtendedBatch("SELECT 2") + Sync());
  std::string reply = ReadUntilReady(*call);
  std::string first;
  for (char type : {'1', '2', 'C'}) {
    REQUIRE(reply.size() >= 5);
    CHECK(reply[0] == type);  // the allowed statement's answers reach the caller
    reply.erase(0, 1 + ((uint8_t(reply[1]) << 24) | (uint8_t(reply[2]) << 16) | (uint8_t(reply[3]) << 8) | uint8_t(reply[4])));
  }
  const TakenError error = TakeError(reply);
  CHECK(error.sqlstate == "42501");
  CHECK_THAT(error.message, Catch::Contains("statement refused"));
  CHECK(reply == ReadyForQuery('E'));  // the server failed the transaction itself

  // The server got the failing statement in place of the refused one, and nothing after it.
  const std::vector<std::string> parses = h.postgres.Parses();
  REQUIRE(parses.size() == 2);
  CHECK(parses.at(0) == "SELECT 1");
  CHECK_THAT(parses.at(1), Catch::Contains("pg_catalog.int4div(1, 0)"));
  call->Send(Query("COMMIT"));
  reply = ReadUntilReady(*call);
  CHECK_THAT(reply, Catch::Contains("ROLLBACK"));
  CHECK_THAT(reply, Catch::EndsWith(ReadyForQuery('I')));

  // Outside a transaction the session stays idle and goes on.
  call->Send(ExtendedBatch("DELETE FROM orders") + Sync());
  reply = ReadUntilReady(*call);
  CHECK(TakeError(reply).sqlstate == "42501");
  CHECK(reply == ReadyForQuery('I'));
  call->Send(Query("SELECT 1"));
  CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
}

TEST_CASE("the gateway's CancelSession reaches the session's backend and the session goes on", "[session]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-cancel", pgward::v1::MODE_READ_ONLY));
  call->Send(Query("SELECT pg_sleep(30)"));
  REQUIRE(h.postgres.WaitForQueries(1, kWait));

  h.sessions().Cancel("s-cancel");
  REQUIRE(h.postgres.WaitForCancels(1, kWait));
  CHECK(h.postgres.Cancels().at(0) == std::pair<int32_t, uint32_t>(FakePostgres::kFirstPid, FakePostgres::kBackendKey));
  std::string reply = ReadUntilReady(*call);
  CHECK(TakeError(reply).sqlstate == "57014");
  CHECK(reply == ReadyForQuery('I'));
  REQUIRE(h.sink.WaitForStatements(1, kWait));
  CHECK(h.sink.statements().at(0).sqlstate() == "57014");
  CHECK(h.sink.statements().at(0).decision() == "allowed");

  call->Send(Query("SELECT 1"));
  CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
  CHECK(h.sink.ended_count() == 0);
  CHECK(h.sessions().Count() == 1);
}

TEST_CASE("a second grant with a live session's id is ignored", "[session]") {
  SessionHarness h;
  const auto grant = h.Grant("s-twice", pgward::v1::MODE_READ_ONLY);
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, grant);
  h.sessions().Start(grant);
  CHECK(h.gateway.NextCall(absl::Milliseconds(300)) == nullptr);  // no second stream, no second login
  CHECK(h.sessions().Count() == 1);
  call->Send(Query("SELECT 1"));
  CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
  CHECK(h.postgres.StartupParameters(1, absl::Milliseconds(1)).empty());
}

TEST_CASE("the gateway's EndSession cancels the running statement, closes the upstream and reports the reason",
          "[session]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-kill", pgward::v1::MODE_READ_ONLY));
  call->Send(Query("SELECT pg_sleep(30)"));
  REQUIRE(h.postgres.WaitForQueries(1, kWait));  // running upstream, unanswered

  h.sessions().End("s-kill", "killed");
  const auto ended = h.sink.WaitForEnded(kWait);
  REQUIRE(ended);
  CHECK(ended->session_id() == "s-kill");
  CHECK(ended->reason() == "killed");
  // A CancelRequest for exactly this backend, so the statement stops too, and the close.
  REQUIRE(h.postgres.WaitForCancels(1, kWait));
  CHECK(h.postgres.Cancels().at(0) == std::pair<int32_t, uint32_t>(FakePostgres::kFirstPid, FakePostgres::kBackendKey));
  CHECK(h.postgres.WaitUntilAllClosed(kWait));
  CHECK_FALSE(h.postgres.terminated_cleanly(0));
  CHECK(call->WaitForEnd(kWait));
  CHECK(h.WaitForNoSessions(kWait));
  CHECK(h.sink.ended_count() == 1);
  // The statement's result never came back: it is recorded, with outcome unknown.
  REQUIRE(h.sink.WaitForStatements(1, kWait));
  const pgward::v1::StatementEvent event = h.sink.statements().at(0);
  CHECK(event.statement() == "SELECT pg_sleep($1)");
  CHECK(event.outcome() == "unknown");
  CHECK(event.rows() == -1);
  CHECK_THAT(event.error(), Catch::Contains("may have run"));
  CHECK(h.sink.links().at(0).intent_id == 1);
}

TEST_CASE("a full spool refuses new statements with 53000 and the session goes on", "[session][spool]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-full", pgward::v1::MODE_READ_ONLY));
  h.sink.SetSpoolRefuses(true);
  call->Send(Query("SELECT 1"));
  std::string reply = ReadUntilReady(*call);
  const TakenError error = TakeError(reply);
  CHECK(error.severity == "ERROR");
  CHECK(error.sqlstate == "53000");
  CHECK_THAT(error.message, Catch::Contains("spool is full"));
  CHECK(reply == ReadyForQuery('I'));
  REQUIRE(h.postgres.Queries().size() == 1);  // only the refusal's failing statement
  CHECK_THAT(h.postgres.Queries().at(0), Catch::Contains("pg_catalog.int4div(1, 0)"));
  CHECK(h.sink.intents().empty());

  h.sink.SetSpoolRefuses(false);
  call->Send(Query("SELECT 1"));
  CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
  CHECK(h.postgres.Queries().back() == "SELECT 1");
}

TEST_CASE("a spool that cannot write ends the session before the statement is forwarded", "[session][spool]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-failed", pgward::v1::MODE_READ_ONLY));
  h.sink.SetSpoolFails(true);
  call->Send(Query("SELECT 1"));
  auto [data, reason] = ReadUntilEnd(*call);
  CHECK(reason == "spool_failed");
  const TakenError fatal = TakeError(data);
  CHECK(fatal.severity == "FATAL");
  CHECK(fatal.sqlstate == "53000");
  CHECK_THAT(fatal.message, Catch::Contains("nothing of this request was run"));
  const auto ended = h.sink.WaitForEnded(kWait);
  REQUIRE(ended);
  CHECK(ended->reason() == "spool_failed");
  CHECK(h.postgres.WaitUntilAllClosed(kWait));
  CHECK(h.postgres.Queries().empty());
  CHECK(h.WaitForNoSessions(kWait));
}

TEST_CASE("a gateway stream that breaks ends the session and closes the upstream", "[session]") {
  const std::string how = GENERATE(as<std::string>{}, "cancelled by the gateway", "the gateway shut down");
  INFO(how);
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-lost", pgward::v1::MODE_READ_ONLY));
  call->Send(Query("SELECT 1"));
  REQUIRE(ReadUntilReady(*call) == FakePostgres::QueryAnswer());

  if (how == "cancelled by the gateway") {
    call->Cancel();
  } else {
    h.gateway.Shutdown();
  }
  const auto ended = h.sink.WaitForEnded(kWait);
  REQUIRE(ended);
  CHECK(ended->reason() == "client_disconnect");
  CHECK(h.postgres.WaitUntilAllClosed(kWait));
  CHECK(h.postgres.Cancels().empty());  // nothing was running: closing is enough
  CHECK(call->WaitForEnd(kWait));
  CHECK(h.WaitForNoSessions(kWait));
}

TEST_CASE("an upstream that closes delivers its FATAL and ends the stream with end_reason upstream_closed",
          "[session]") {
  SessionHarness h;
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-upstream", pgward::v1::MODE_READ_ONLY));

  h.postgres.TerminateAll();
  auto [data, reason] = ReadUntilEnd(*call);
  CHECK(reason == "upstream_closed");
  const TakenError fatal = TakeError(data);
  CHECK(fatal.severity == "FATAL");
  CHECK(fatal.sqlstate == "57P01");
  CHECK(data.empty());
  CHECK(call->WaitForAgentDone(kWait));
  const auto ended = h.sink.WaitForEnded(kWait);
  REQUIRE(ended);
  CHECK(ended->reason() == "upstream_closed");
  CHECK(call->WaitForEnd(kWait));
  CHECK(h.WaitForNoSessions(kWait));
}

TEST_CASE("while the event sink is backlogged the caller's next statement is held back", "[session]") {
  SessionHarness h;
  h.sink.SetBacklogged(true);
  std::shared_ptr<FakeGateway::Call> call = OpenSession(h, h.Grant("s-backlog", pgward::v1::MODE_READ_ONLY));
  call->Send(Query("SELECT 1"));
  // Not read from the stream, so not sent upstream (a hold can only be shown to last a while).
  CHECK_FALSE(h.postgres.WaitForQueries(1, absl::Milliseconds(300)));
  CHECK_FALSE(call->NextFrame(absl::Milliseconds(1)).has_value());

  SECTION("and runs once the backlog clears") {
    h.sink.SetBacklogged(false);
    CHECK(ReadUntilReady(*call) == FakePostgres::QueryAnswer());
    CHECK(h.postgres.Queries() == std::vector<std::string>{"SELECT 1"});
    CHECK(h.sink.WaitForStatements(1, kWait));
  }
  SECTION("and a stop still ends the waiting session") {
    h.sessions().End("s-backlog", "killed");
    const auto ended = h.sink.WaitForEnded(kWait);
    REQUIRE(ended);
    CHECK(ended->reason() == "killed");
    CHECK(h.postgres.WaitUntilAllClosed(kWait));
    CHECK(h.postgres.Queries().empty());
    CHECK(h.WaitForNoSessions(kWait));
  }
}

}  // namespace pgward::agent::testing
