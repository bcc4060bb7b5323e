// Store: schema migrations, agents, connections and grants.
#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "common/crypto/token_hash.h"
#include "gateway/store/migrations.h"
#include "gateway/store/store.h"
#include "tests/unit/store/temp_dir.h"

namespace pgward::store {
namespace {

using pgward::testing::TempDir;

std::unique_ptr<Store> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return *std::move(store);
}

// Runs SQL on the file directly, bypassing Store, to set up old or foreign schemas.
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  INFO((error != nullptr ? error : ""));
  sqlite3_free(error);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

pgward::v1::Connection MakeConnection(const std::string& name, const std::string& agent) {
  pgward::v1::Connection c;
  c.set_name(name);
  c.set_agent(agent);
  c.set_host("db.internal");
  c.set_port(5432);
  c.set_database("app");
  c.set_user("app_rw");
  c.set_password_ref("agent-env:PGPASSWORD");
  c.set_sslmode("prefer");
  return c;
}

pgward::v1::Grant PrincipalGrant(const std::string& principal, const std::string& connection) {
  pgward::v1::Grant g;
  g.set_principal(principal);
  g.set_connection(connection);
  g.mutable_policy()->set_mode(pgward::v1::MODE_READ_ONLY);
  return g;
}

TEST_CASE("a fresh database is migrated to the latest version and reopening is a no-op", "[store][migrations]") {
  TempDir dir;
  const std::string path = dir.File("pgward.db");
  {
    auto store = OpenOrDie(path);
    CHECK(store->SchemaVersion() == LatestSchemaVersion());
    REQUIRE(store->CreateAgent("a1", crypto::HashToken("t")).ok());
  }
  auto again = OpenOrDie(path);
  CHECK(again->SchemaVersion() == LatestSchemaVersion());
  auto agents = again->ListAgents();
  REQUIRE(agents.ok());
  CHECK(agents->size() == 1);

  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("a version 1 database is migrated forward keeping its rows", "[store][migrations]") {
  TempDir dir;
  const std::string path = dir.File("pgward.db");
  REQUIRE(Migrations().size() >= 2);
  RawExec(path, std::string("CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);") +
                    Migrations()[0].sql +
                    "INSERT INTO schema_migrations VALUES (1, 0);"
                    "INSERT INTO agents(name, token_hash, created_unix_ms) VALUES ('old', 'sha256:x', 1);");
  auto store = OpenOrDie(path);
  CHECK(store->SchemaVersion() == LatestSchemaVersion());
  auto agents = store->ListAgents();
  REQUIRE(agents.ok());
  REQUIRE(agents->size() == 1);
  CHECK((*agents)[0].name() == "old");
  // Version 2 tables are usable.
  pgward::v1::SessionRecord s;
  s.set_session_id("s1");
  CHECK(store->InsertSession(s).ok());
}

TEST_CASE("a database written by a newer pgward is refused", "[store][migrations]") {
  TempDir dir;
  const std::string path = dir.File("pgward.db");
  { OpenOrDie(path); }
  RawExec(path, "INSERT INTO schema_migrations VALUES (" + std::to_string(LatestSchemaVersion() + 1) + ", 0);");
  auto store = Store::Open(path);
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(store.status().message()).find("newer") != std::string::npos);
}

TEST_CASE("agents are created once, authenticate by token hash and are touched", "[store][agents]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge-1", crypto::HashToken("secret-token")).ok());
  CHECK(store->CreateAgent("edge-1", crypto::HashToken("other")).code() == absl::StatusCode::kAlreadyExists);

  CHECK(store->AuthenticateAgent("edge-1", "secret-token").ok());
  const absl::Status wrong = store->AuthenticateAgent("edge-1", "wrong");
  const absl::Status unknown = store->AuthenticateAgent("nobody", "secret-token");
  CHECK(wrong.code() == absl::StatusCode::kUnauthenticated);
  CHECK(unknown.code() == absl::StatusCode::kUnauthenticated);
  CHECK(wrong.message() == unknown.message());

  REQUIRE(store->TouchAgent("edge-1", 12345, "0.1.0", "10.0.0.7:5555").ok());
  CHECK(store->TouchAgent("nobody", 1, "", "").code() == absl::StatusCode::kNotFound);
  auto agents = store->ListAgents();
  REQUIRE(agents.ok());
  REQUIRE(agents->size() == 1);
  CHECK((*agents)[0].last_seen_unix_ms() == 12345);
  CHECK((*agents)[0].version() == "0.1.0");
  CHECK((*agents)[0].peer() == "10.0.0.7:5555");
  CHECK((*agents)[0].created_unix_ms() > 0);
}

TEST_CASE("a rotated agent token keeps working only through its grace period", "[store][agents]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge-1", crypto::HashToken("first")).ok());
  const int64_t now = 1'000'000;
  CHECK_FALSE(store->NextAgentTokenExpiry(now)->has_value());

  auto rotated = store->RotateAgentToken("edge-1", crypto::HashToken("second"), 5'000, now);
  REQUIRE(rotated.ok());
  CHECK(rotated->current == crypto::HashToken("second"));
  CHECK(rotated->previous == crypto::HashToken("first"));
  CHECK(rotated->previous_expires_unix_ms == now + 5'000);
  CHECK(rotated->Accepts(crypto::HashToken("first"), now + 4'999));
  CHECK_FALSE(rotated->Accepts(crypto::HashToken("first"), now + 5'000));
  CHECK(rotated->Accepts(crypto::HashToken("second"), now + 999'999));
  CHECK_FALSE(rotated->Accepts(crypto::HashToken("other"), now));
  CHECK(store->NextAgentTokenExpiry(now)->value() == now + 5'000);
  CHECK_FALSE(store->NextAgentTokenExpiry(now + 5'000)->has_value());
  // Authentication uses the wall clock: the grace above ended long ago (now is 1970).
  CHECK(store->AuthenticateAgent("edge-1", "second").ok());
  CHECK(store->AuthenticateAgent("edge-1", "first").code() == absl::StatusCode::kUnauthenticated);

  // Rotating again drops the token before the last rotation; grace 0 keeps none.
  const int64_t wall = absl::ToUnixMillis(absl::Now());
  REQUIRE(store->RotateAgentToken("edge-1", crypto::HashToken("third"), 60'000, wall).ok());
  CHECK(store->AuthenticateAgent("edge-1", "second").ok());  // within its grace
  CHECK(store->AuthenticateAgent("edge-1", "third").ok());
  auto now_only = store->RotateAgentToken("edge-1", crypto::HashToken("fourth"), 0, wall);
  REQUIRE(now_only.ok());
  CHECK(now_only->previous.empty());
  CHECK(store->AuthenticateAgent("edge-1", "third").code() == absl::StatusCode::kUnauthenticated);
  CHECK(store->AuthenticateAgent("edge-1", "second").code() == absl::StatusCode::kUnauthenticated);
  CHECK(store->AuthenticateAgent("edge-1", "fourth").ok());
  CHECK(store->GetAgentCredentials("edge-1")->current == crypto::HashToken("fourth"));

  CHECK(store->RotateAgentToken("nobody", crypto::HashToken("x"), 0, wall).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(store->GetAgentCredentials("nobody").status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("an agent used by a connection cannot be deleted", "[store][agents]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge-1", "h").ok());
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge-1"), "").ok());
  const absl::Status busy = store->DeleteAgent("edge-1");
  CHECK(busy.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(std::string(busy.message()).find("app") != std::string::npos);
  REQUIRE(store->DeleteConnection("app").ok());
  CHECK(store->DeleteAgent("edge-1").ok());
  CHECK(store->DeleteAgent("edge-1").code() == absl::StatusCode::kNotFound);
}

TEST_CASE("connections are created, read, updated by field and deleted with their grants", "[store][connections]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge-1", "h").ok());
  REQUIRE(store->CreateAgent("edge-2", "h").ok());
  CHECK(store->CreateConnection(MakeConnection("app", "ghost"), "").code() == absl::StatusCode::kNotFound);
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge-1"), "sealed-bytes").ok());
  CHECK(store->CreateConnection(MakeConnection("app", "edge-1"), "").code() == absl::StatusCode::kAlreadyExists);

  auto got = store->GetConnection("app");
  REQUIRE(got.ok());
  CHECK(got->host() == "db.internal");
  CHECK(got->port() == 5432);
  CHECK(got->created_unix_ms() > 0);
  CHECK(*store->GetSealedPassword("app") == "sealed-bytes");
  CHECK(store->GetConnection("nope").status().code() == absl::StatusCode::kNotFound);

  pgward::v1::Connection change;
  change.set_name("app");
  change.set_port(6432);
  change.set_host("ignored-because-not-listed");
  change.set_agent("edge-2");
  REQUIRE(store->UpdateConnection(change, {"port", "agent"}, std::nullopt).ok());
  got = store->GetConnection("app");
  REQUIRE(got.ok());
  CHECK(got->port() == 6432);
  CHECK(got->agent() == "edge-2");
  CHECK(got->host() == "db.internal");
  CHECK(*store->GetSealedPassword("app") == "sealed-bytes");

  REQUIRE(store->UpdateConnection(change, {}, std::string("new-sealed")).ok());
  CHECK(*store->GetSealedPassword("app") == "new-sealed");
  CHECK(store->UpdateConnection(change, {"name"}, std::nullopt).code() == absl::StatusCode::kInvalidArgument);
  change.set_agent("ghost");
  CHECK(store->UpdateConnection(change, {"agent"}, std::nullopt).code() == absl::StatusCode::kNotFound);
  change.set_name("nope");
  CHECK(store->UpdateConnection(change, {"port"}, std::nullopt).code() == absl::StatusCode::kNotFound);

  REQUIRE(store->CreateGrant(PrincipalGrant("bot", "app")).ok());
  REQUIRE(store->DeleteConnection("app").ok());
  auto grants = store->ListGrants({});
  REQUIRE(grants.ok());
  CHECK(grants->empty());
  CHECK(store->DeleteConnection("app").code() == absl::StatusCode::kNotFound);
  auto list = store->ListConnections();
  REQUIRE(list.ok());
  CHECK(list->empty());
}

TEST_CASE("grants get an id, keep their policy, filter and delete", "[store][grants]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge", "h").ok());
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge"), "").ok());
  REQUIRE(store->CreateConnection(MakeConnection("crm", "edge"), "").ok());

  CHECK(store->CreateGrant(PrincipalGrant("bot", "missing")).status().code() == absl::StatusCode::kNotFound);
  pgward::v1::Grant both = PrincipalGrant("bot", "app");
  both.set_group("ops");
  CHECK(store->CreateGrant(both).status().code() == absl::StatusCode::kInvalidArgument);

  pgward::v1::Grant classes = PrincipalGrant("bot", "app");
  classes.mutable_policy()->set_mode(pgward::v1::MODE_STATEMENT_CLASSES);
  classes.mutable_policy()->add_statement_classes("read");
  classes.mutable_policy()->add_statement_classes("copy_out");
  classes.set_created_by("admin.key");
  auto g1 = store->CreateGrant(classes);
  REQUIRE(g1.ok());
  CHECK(g1->id().rfind("g_", 0) == 0);
  CHECK(g1->id().size() == 18);
  CHECK(g1->created_unix_ms() > 0);
  pgward::v1::Grant group = PrincipalGrant("", "crm");
  group.set_group("ops");
  auto g2 = store->CreateGrant(group);
  REQUIRE(g2.ok());
  CHECK(g2->id() != g1->id());

  auto all = store->ListGrants({});
  REQUIRE(all.ok());
  CHECK(all->size() == 2);
  pgward::v1::ListGrantsRequest by_principal;
  by_principal.set_principal("bot");
  auto bots = store->ListGrants(by_principal);
  REQUIRE(bots.ok());
  REQUIRE(bots->size() == 1);
  CHECK((*bots)[0].policy().statement_classes_size() == 2);
  CHECK((*bots)[0].created_by() == "admin.key");
  pgward::v1::ListGrantsRequest by_connection;
  by_connection.set_connection("crm");
  auto crm = store->ListGrants(by_connection);
  REQUIRE(crm.ok());
  REQUIRE(crm->size() == 1);
  CHECK((*crm)[0].group() == "ops");

  REQUIRE(store->DeleteGrant(g1->id()).ok());
  CHECK(store->DeleteGrant(g1->id()).code() == absl::StatusCode::kNotFound);
}

TEST_CASE("NextGrantExpiry is the earliest expiry still ahead", "[store][grants]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge", "h").ok());
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge"), "").ok());
  const int64_t now = 1'000'000;
  CHECK_FALSE(store->NextGrantExpiry(now)->has_value());  // no grants
  pgward::v1::Grant forever = PrincipalGrant("bot", "app");
  REQUIRE(store->CreateGrant(forever).ok());
  CHECK_FALSE(store->NextGrantExpiry(now)->has_value());  // never expires
  for (int64_t at : {now - 5, now, now + 700, now + 300}) {
    pgward::v1::Grant g = PrincipalGrant("bot", "app");
    g.set_expires_unix_ms(at);
    REQUIRE(store->CreateGrant(g).ok());
  }
  CHECK(store->NextGrantExpiry(now)->value() == now + 300);  // past and current ones do not count
  CHECK(store->NextGrantExpiry(now + 300)->value() == now + 700);
  CHECK_FALSE(store->NextGrantExpiry(now + 700)->has_value());
}

TEST_CASE("UpdateGrant writes policy and expiry back in one step, or nothing", "[store][grants]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge", "h").ok());
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge"), "").ok());
  auto created = store->CreateGrant(PrincipalGrant("bot", "app"));
  REQUIRE(created.ok());
  auto updated = store->UpdateGrant(created->id(), [](pgward::v1::Grant& g) {
    CHECK(g.principal() == "bot");  // the stored row is what the change sees
    g.mutable_policy()->set_mode(pgward::v1::MODE_READ_WRITE);
    g.set_expires_unix_ms(5'000);
    g.set_principal("not-written");  // only policy and expiry are written
    return absl::OkStatus();
  });
  REQUIRE(updated.ok());
  auto found = store->FindGrants("https://idp.example", "bot", {}, "app", 1'000, "https://idp.example");
  REQUIRE(found.ok());
  REQUIRE(found->size() == 1);
  CHECK((*found)[0].policy().mode() == pgward::v1::MODE_READ_WRITE);
  CHECK((*found)[0].expires_unix_ms() == 5'000);
  CHECK(store->NextGrantExpiry(1'000)->value() == 5'000);

  // A change that fails writes nothing.
  auto refused = store->UpdateGrant(created->id(), [](pgward::v1::Grant& g) {
    g.mutable_policy()->set_mode(pgward::v1::MODE_READ_ONLY);
    return absl::InvalidArgumentError("no");
  });
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  found = store->FindGrants("https://idp.example", "bot", {}, "app", 1'000, "https://idp.example");
  REQUIRE(found.ok());
  CHECK((*found)[0].policy().mode() == pgward::v1::MODE_READ_WRITE);

  bool called = false;
  auto missing = store->UpdateGrant("g_nope", [&](pgward::v1::Grant&) {
    called = true;
    return absl::OkStatus();
  });
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK_FALSE(called);
}

TEST_CASE("FindGrants matches principal, group, issuer and expiry", "[store][grants]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge", "h").ok());
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge"), "").ok());
  REQUIRE(store->CreateConnection(MakeConnection("other", "edge"), "").ok());
  const std::string idp = "https://idp.example";
  const int64_t now = 1'000'000;

  auto add = [&](const std::string& principal, const std::string& group, const std::string& issuer,
                 int64_t expires, const std::string& connection = "app") {
    pgward::v1::Grant g = PrincipalGrant(principal, connection);
    g.set_group(group);
    g.set_issuer(issuer);
    g.set_expires_unix_ms(expires);
    auto created = store->CreateGrant(g);
    REQUIRE(created.ok());
    return created->id();
  };
  const std::string any_issuer = add("bot", "", "", 0);
  const std::string right_issuer = add("bot", "", idp, now + 1);
  add("bot", "", "https://elsewhere", 0);      // wrong issuer
  add("bot", "", "", now);                       // expired exactly now
  add("bot", "", "", 0, "other");                // other connection
  add("someone-else", "", "", 0);                // other principal
  const std::string group_grant = add("", "analysts", "", 0);
  add("", "admins", "", 0);                      // a group the caller is not in

  auto found = store->FindGrants(idp, "bot", {"analysts", "readers"}, "app", now, /*issuerless_grants_issuer=*/idp);
  REQUIRE(found.ok());
  std::vector<std::string> ids;
  for (const auto& g : *found) ids.push_back(g.id());
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> expected = {any_issuer, right_issuer, group_grant};
  std::sort(expected.begin(), expected.end());
  CHECK(ids == expected);

  auto none = store->FindGrants(idp, "stranger", {}, "app", now, idp);
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto later = store->FindGrants(idp, "bot", {}, "app", now + 1, idp);
  REQUIRE(later.ok());
  CHECK(later->size() == 1);  // right_issuer expired; any_issuer remains

  // Several trusted issuers: a grant without one belongs to nobody (fail closed).
  auto several = store->FindGrants(idp, "bot", {"analysts"}, "app", now, /*issuerless_grants_issuer=*/"");
  REQUIRE(several.ok());
  REQUIRE(several->size() == 1);
  CHECK((*several)[0].id() == right_issuer);
  // Another trusted issuer's "bot" is someone else: only grants naming that issuer.
  auto elsewhere = store->FindGrants("https://elsewhere", "bot", {}, "app", now, "");
  REQUIRE(elsewhere.ok());
  CHECK(elsewhere->size() == 1);
  CHECK(store->CountIssuerlessGrants().value_or(-1) == 6);
}

TEST_CASE("a principal is (issuer, name): the same name from another issuer matches nothing", "[store][grants]") {
  auto store = OpenOrDie(":memory:");
  REQUIRE(store->CreateAgent("edge", "h").ok());
  REQUIRE(store->CreateConnection(MakeConnection("app", "edge"), "").ok());
  const std::string idp1 = "https://one.example", idp2 = "https://two.example";
  pgward::v1::Grant bot = PrincipalGrant("bot-a", "app");
  bot.set_issuer(idp1);
  REQUIRE(store->CreateGrant(bot).ok());
  pgward::v1::Grant group = PrincipalGrant("", "app");
  group.set_group("ops");
  group.set_issuer(idp1);
  REQUIRE(store->CreateGrant(group).ok());

  struct Case {
    std::string issuer, principal, group, implied;
    size_t matches;
  };
  const Case c = GENERATE(Case{"https://one.example", "bot-a", "", "", 1},
                          Case{"https://two.example", "bot-a", "", "", 0},
                          Case{"https://two.example", "bot-a", "", "https://two.example", 0},
                          Case{"https://one.example", "x", "ops", "", 1},
                          Case{"https://two.example", "x", "ops", "", 0},
                          Case{"", "bot-a", "ops", "", 0});
  INFO(c.issuer << " " << c.principal << " " << c.group);
  auto found = store->FindGrants(c.issuer, c.principal, c.group.empty() ? std::vector<std::string>{}
                                                                        : std::vector<std::string>{c.group},
                                 "app", 1, c.implied);
  REQUIRE(found.ok());
  CHECK(found->size() == c.matches);
  (void)idp2;
}

pgward::v1::Revocation MakeRevocation(const std::string& principal, const std::string& group,
                                      const std::string& issuer = "https://idp.example") {
  pgward::v1::Revocation r;
  r.set_principal(principal);
  r.set_group(group);
  r.set_issuer(issuer);
  r.set_reason("offboarded");
  r.set_revoked_by("admin.key");
  r.set_revoked_unix_ms(1000);
  return r;
}

TEST_CASE("a subject's token cut-off only moves forward and is scoped to its issuer", "[store][revoke]") {
  auto store = OpenOrDie(":memory:");
  const std::string issuer = "https://idp.example";
  CHECK(*store->SubjectCutoff(issuer, "bot") == 0);
  CHECK(*store->RaiseSubjectCutoff(issuer, "bot", 2000, "session-revoked", 1) == 2000);
  // An older event arriving late changes nothing; a newer one moves the cut-off on.
  CHECK(*store->RaiseSubjectCutoff(issuer, "bot", 1500, "credential-change", 2) == 2000);
  CHECK(*store->SubjectCutoff(issuer, "bot") == 2000);
  CHECK(*store->RaiseSubjectCutoff(issuer, "bot", 2500, "account-disabled", 3) == 2500);
  CHECK(*store->SubjectCutoff(issuer, "bot") == 2500);
  CHECK(*store->SubjectCutoff("https://other.example", "bot") == 0);
  CHECK(*store->SubjectCutoff(issuer, "bot2") == 0);
  CHECK(*store->SubjectCutoff(issuer, "") == 0);
}

TEST_CASE("a revocation bars its principal, or its group's members, of its issuer only", "[store][revoke]") {
  auto store = OpenOrDie(":memory:");
  const std::string issuer = "https://idp.example";
  REQUIRE(store->Revoke(MakeRevocation("bot", "")).ok());
  REQUIRE(store->Revoke(MakeRevocation("", "contractors")).ok());

  auto bot = store->FindRevocation(issuer, "bot", {});
  REQUIRE(bot.ok());
  REQUIRE(bot->has_value());
  CHECK((*bot)->principal() == "bot");
  CHECK((*bot)->reason() == "offboarded");
  CHECK((*bot)->revoked_by() == "admin.key");

  auto member = store->FindRevocation(issuer, "alice", {"staff", "contractors"});
  REQUIRE(member.ok());
  REQUIRE(member->has_value());
  CHECK((*member)->group() == "contractors");
  // The principal's own revocation is the one named when both apply.
  auto both = store->FindRevocation(issuer, "bot", {"contractors"});
  REQUIRE(both.ok());
  REQUIRE(both->has_value());
  CHECK((*both)->principal() == "bot");

  // Names are issuer-scoped; a principal named like a revoked group is not barred; a token
  // without an issuer matches nothing.
  CHECK_FALSE(store->FindRevocation("https://other.example", "bot", {"contractors"})->has_value());
  CHECK_FALSE(store->FindRevocation(issuer, "contractors", {"staff"})->has_value());
  CHECK_FALSE(store->FindRevocation(issuer, "alice", {})->has_value());
  CHECK_FALSE(store->FindRevocation("", "bot", {})->has_value());

  CHECK(absl::IsAlreadyExists(store->Revoke(MakeRevocation("bot", ""))));
  REQUIRE(store->Restore(MakeRevocation("bot", "")).ok());
  CHECK_FALSE(store->FindRevocation(issuer, "bot", {})->has_value());
  CHECK(absl::IsNotFound(store->Restore(MakeRevocation("bot", ""))));
  // A group and a principal of the same name are different revocations.
  CHECK(absl::IsNotFound(store->Restore(MakeRevocation("contractors", ""))));
  auto all = store->ListRevocations();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].group() == "contractors");
}

TEST_CASE("revocations survive a reopen of the store file", "[store][revoke]") {
  TempDir dir;
  const std::string path = dir.File("pgward.db");
  REQUIRE(OpenOrDie(path)->Revoke(MakeRevocation("bot", "")).ok());
  auto again = OpenOrDie(path);
  CHECK(again->FindRevocation("https://idp.example", "bot", {})->has_value());
}

}  // namespace
}  // namespace pgward::store
