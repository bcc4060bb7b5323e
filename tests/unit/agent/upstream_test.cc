// Pure helpers of the upstream side: startup option escaping, credential references, the agent's
// allow-lists and password rules, and the settings pinned at login.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <string>
#include <utility>
#include <vector>

#include "agent/upstream/credential_resolver.h"
#include "agent/upstream/pinned_settings.h"
#include "agent/upstream/upstream_login.h"
#include "agent/upstream/upstream_policy.h"

using pgward::agent::EscapeStartupOption;
using pgward::agent::ResolveCredential;

TEST_CASE("startup option values escape whitespace and backslashes as Postgres splits them", "[upstream]") {
  CHECK(EscapeStartupOption("alice-bot") == "alice-bot");
  CHECK(EscapeStartupOption("a b") == "a\\ b");
  CHECK(EscapeStartupOption("a\\b") == "a\\\\b");
  CHECK(EscapeStartupOption("x -c y=z") == "x\\ -c\\ y=z");
  CHECK(EscapeStartupOption("tab\there") == "tab\\\there");
}

TEST_CASE("credential references resolve on the agent", "[upstream]") {
  pgward::v1::UpstreamTarget target;
  SECTION("agent-env reads the agent's environment") {
    ::setenv("PGWARD_TEST_SECRET", "s3cret", 1);
    target.set_password_ref("agent-env:PGWARD_TEST_SECRET");
    auto value = ResolveCredential(target);
    REQUIRE(value.ok());
    CHECK(*value == "s3cret");
  }
  SECTION("a missing variable is an error that names the variable, not a value") {
    ::unsetenv("PGWARD_TEST_MISSING");
    target.set_password_ref("agent-env:PGWARD_TEST_MISSING");
    auto value = ResolveCredential(target);
    REQUIRE_FALSE(value.ok());
    CHECK_THAT(std::string(value.status().message()), Catch::Contains("PGWARD_TEST_MISSING"));
  }
  SECTION("agent-file reads a file and trims the trailing newline") {
    char path[] = "/tmp/pgward-cred-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream(path) << "from-file\n";
    target.set_password_ref(std::string("agent-file:") + path);
    auto value = ResolveCredential(target);
    ::unlink(path);
    REQUIRE(value.ok());
    CHECK(*value == "from-file");
  }
  SECTION("a missing file is an error") {
    target.set_password_ref("agent-file:/nonexistent/pgward");
    CHECK_FALSE(ResolveCredential(target).ok());
  }
  SECTION("gateway: uses the value the gateway decrypted") {
    target.set_password_ref("gateway:");
    target.set_password_value("sealed-then-opened");
    auto value = ResolveCredential(target);
    REQUIRE(value.ok());
    CHECK(*value == "sealed-then-opened");
  }
  SECTION("an unknown scheme is refused") {
    target.set_password_ref("vault:secret/db");
    auto value = ResolveCredential(target);
    REQUIRE_FALSE(value.ok());
    CHECK_THAT(std::string(value.status().message()), Catch::Contains("vault"));
  }
}

// ---- the agent host's allow-lists (--allow-upstream, --allow-credential) ----------------

namespace {

using pgward::agent::PasswordRequest;
using pgward::agent::UpstreamPolicy;
using pgward::agent::UpstreamTransport;

UpstreamPolicy PolicyWith(std::vector<std::string> upstreams, std::vector<std::string> credentials = {},
                          bool allow_weak = false) {
  UpstreamPolicy::Options options;
  options.allow_upstream = std::move(upstreams);
  options.allow_credential = std::move(credentials);
  options.allow_weak_auth = allow_weak;
  auto policy = UpstreamPolicy::Create(options);
  REQUIRE(policy.ok());
  return *std::move(policy);
}

}  // namespace

TEST_CASE("allow-upstream entries match hosts and ports as documented", "[upstream][policy]") {
  auto [entry, host, port, allowed] = GENERATE(table<std::string, std::string, uint32_t, bool>({
      {"db.internal", "db.internal", 5432, true},
      {"db.internal", "DB.Internal", 5432, true},      // names are case-insensitive
      {"db.internal", "db.internal", 0, true},         // port 0 means the default, 5432
      {"db.internal", "db.internal", 6432, false},     // no port: 5432 only
      {"db.internal", "db.internal.evil", 5432, false},
      {"db.internal", "10.0.0.5", 5432, false},        // names are not resolved for the check
      {"db.internal:6432", "db.internal", 6432, true},
      {"db.internal:6432", "db.internal", 5432, false},
      {"db.internal:*", "db.internal", 1, true},
      {"127.0.0.1:*", "127.0.0.1", 15432, true},
      {"127.0.0.1:*", "127.0.0.2", 15432, false},
      {"127.0.0.1:*", "localhost", 15432, false},      // matched as written, not resolved
      {"10.0.0.0/8", "10.200.3.4", 5432, true},
      {"10.0.0.0/8", "11.0.0.1", 5432, false},
      {"10.0.0.0/8", "db.internal", 5432, false},
      {"10.1.2.0/23:*", "10.1.3.255", 7000, true},
      {"10.1.2.0/23:*", "10.1.4.0", 7000, false},
      {"[::1]:5433", "::1", 5433, true},
      {"[::1]:5433", "0:0::1", 5433, true},            // addresses compare as addresses
      {"::1", "::1", 5432, true},                      // IPv6 without brackets: no port part
      {"[fd00::/8]:*", "fd12::7", 1234, true},
      {"[fd00::/8]:*", "fe80::1", 1234, false},
      {"[fd00::/8]:*", "10.0.0.1", 1234, false},
      {"*", "anything.example", 5432, true},
      {"*", "anything.example", 5433, false},
      {"*:*", "anything.example", 1, true},
  }));
  INFO(entry << " vs " << host << ":" << port);
  CHECK(PolicyWith({entry}).AllowsUpstream(host, port) == allowed);
}

TEST_CASE("malformed --allow-upstream entries are refused at start-up", "[upstream][policy]") {
  auto entry = GENERATE(as<std::string>{}, "", "db:", "db:0", "db:65536", "db:54x", "[::1", "[::1]x",
                        "10.0.0.0/33", "bad/8", "db_ok?:5432", "a b");
  INFO(entry);
  UpstreamPolicy::Options options;
  options.allow_upstream = {entry};
  auto policy = UpstreamPolicy::Create(options);
  REQUIRE_FALSE(policy.ok());
  CHECK_THAT(std::string(policy.status().message()), Catch::Contains("--allow-upstream"));
}

TEST_CASE("allow-credential patterns: exact or a trailing *, inside the pattern's directory", "[upstream][policy]") {
  UpstreamPolicy policy = PolicyWith({"*"}, {"agent-env:SHOP_*", "agent-env:BILLING", "agent-file:/etc/pgward/secrets/*"});
  auto [reference, allowed] = GENERATE(table<std::string, bool>({
      {"agent-env:SHOP_DB_PASSWORD", true},
      {"agent-env:SHOP_", true},
      {"agent-env:SHOPX", false},
      {"agent-env:BILLING", true},
      {"agent-env:BILLING2", false},
      {"agent-env:HOME", false},
      {"agent-file:/etc/pgward/secrets/shop", true},
      {"agent-file:/etc/pgward/secrets/sub/shop", true},
      {"agent-file:/etc/pgward/secrets/../../shadow", false},
      {"agent-file:/etc/pgward/secrets/./shop", false},
      {"agent-file:/etc/pgward/secrets//shop", false},
      {"agent-file:/etc/hostname", false},
      {"agent-file:relative/secrets/x", false},
      {"vault:secret/db", false},
      {"gateway:", true},                               // the secret came from the gateway
      {"", true},                                       // trust/peer: nothing is read
      {std::string("agent-env:SHOP_\0X", 17), false},
  }));
  INFO(reference);
  CHECK(policy.AllowsCredential(reference) == allowed);
}

TEST_CASE("no --allow-credential allows only references that read nothing on the agent", "[upstream][policy]") {
  UpstreamPolicy policy = PolicyWith({"*"});
  CHECK(policy.AllowsCredential("gateway:"));
  CHECK_FALSE(policy.AllowsCredential("agent-env:SHOP_DB_PASSWORD"));
  CHECK_FALSE(policy.AllowsCredential("agent-file:/etc/pgward/secret"));
}

TEST_CASE("malformed --allow-credential patterns are refused at start-up", "[upstream][policy]") {
  auto pattern = GENERATE(as<std::string>{}, "SHOP_*", "vault:*", "agent-env:*_PASSWORD", "agent-file:relative/*",
                          "gateway:");
  INFO(pattern);
  UpstreamPolicy::Options options;
  options.allow_credential = {pattern};
  auto policy = UpstreamPolicy::Create(options);
  REQUIRE_FALSE(policy.ok());
  CHECK_THAT(std::string(policy.status().message()), Catch::Contains("--allow-credential"));
}

TEST_CASE("a target is checked for host, then credential; no --allow-upstream refuses all", "[upstream][policy]") {
  pgward::v1::UpstreamTarget target;
  target.set_host("127.0.0.1");
  target.set_port(5432);
  target.set_password_ref("agent-file:/etc/hostname");
  auto none = PolicyWith({});
  CHECK(none.allows_no_upstream());
  CHECK_THAT(std::string(none.CheckTarget(target).message()), Catch::Contains("--allow-upstream HOST[:PORT]"));
  auto loopback = PolicyWith({"127.0.0.1"}, {"agent-env:*"});
  absl::Status status = loopback.CheckTarget(target);
  CHECK(status.code() == absl::StatusCode::kPermissionDenied);
  CHECK_THAT(std::string(status.message()), Catch::Contains("--allow-credential"));
  target.set_password_ref("agent-env:SHOP");
  CHECK(loopback.CheckTarget(target).ok());
  target.set_port(6432);
  CHECK_THAT(std::string(loopback.CheckTarget(target).message()), Catch::Contains("127.0.0.1:6432"));
}

TEST_CASE("cleartext and md5 passwords go only over TLS, unverified TLS only when allowed", "[upstream][policy]") {
  auto [transport, allow_weak, allowed] = GENERATE(table<UpstreamTransport, bool, bool>({
      {UpstreamTransport::kPlaintext, false, false},
      {UpstreamTransport::kPlaintext, true, false},  // never, whatever the flag says
      {UpstreamTransport::kTlsUnverified, false, false},
      {UpstreamTransport::kTlsUnverified, true, true},
      {UpstreamTransport::kTlsVerified, false, true},
      {UpstreamTransport::kTlsVerified, true, true},
  }));
  auto request = GENERATE(PasswordRequest::kCleartext, PasswordRequest::kMd5);
  UpstreamPolicy policy = PolicyWith({"*"}, {}, allow_weak);
  absl::Status status = policy.CheckPasswordRequest(request, transport);
  INFO(status.message());
  CHECK(status.ok() == allowed);
  if (!allowed) CHECK_THAT(std::string(status.message()), Catch::Contains("scram-sha-256"));
}

// ---- settings pinned at login, and the watch on them -------------------------------------

namespace {

using pgward::agent::ParameterWatch;
using pgward::agent::UpstreamStartupParameters;
using Pairs = std::vector<std::pair<std::string, std::string>>;

pgward::v1::SessionGrant GrantFor(const std::string& principal, pgward::v1::Mode mode) {
  pgward::v1::SessionGrant grant;
  grant.set_principal(principal);
  grant.set_session_id("s-1");
  grant.mutable_policy()->set_mode(mode);
  return grant;
}

}  // namespace

TEST_CASE("the upstream startup pins identity, read-only mode and lexing settings", "[upstream][pinned]") {
  auto grant = GrantFor("alice bot", pgward::v1::MODE_READ_ONLY);
  auto parameters = UpstreamStartupParameters(grant);
  REQUIRE(parameters.ok());
  CHECK(*parameters ==
        Pairs{{"application_name", "pgward:alice bot"},
              {"options",
               "-c pgward.principal=alice\\ bot -c pgward.session_id=s-1 -c default_transaction_read_only=on "
               "-c standard_conforming_strings=on -c backslash_quote=safe_encoding -c client_encoding=UTF8"}});
}

TEST_CASE("the caller's allowed parameters follow; client_encoding joins the pinned options", "[upstream][pinned]") {
  auto grant = GrantFor("bob", pgward::v1::MODE_READ_WRITE);
  (*grant.mutable_startup_parameters())["client_encoding"] = "latin-1";
  (*grant.mutable_startup_parameters())["TimeZone"] = "Europe/Berlin";
  (*grant.mutable_startup_parameters())["DateStyle"] = "ISO, DMY";
  auto parameters = UpstreamStartupParameters(grant);
  REQUIRE(parameters.ok());
  CHECK(*parameters == Pairs{{"application_name", "pgward:bob"},
                             {"options",
                              "-c pgward.principal=bob -c pgward.session_id=s-1 -c standard_conforming_strings=on "
                              "-c backslash_quote=safe_encoding -c client_encoding=LATIN1"},
                             {"DateStyle", "ISO, DMY"},
                             {"TimeZone", "Europe/Berlin"}});
}

TEST_CASE("the agent refuses parameters a gateway should never have sent", "[upstream][pinned]") {
  auto [name, value] = GENERATE(table<std::string, std::string>({
      {"default_transaction_read_only", "off"},
      {"options", "-c role=postgres"},
      {"client_encoding", "SJIS"},
      {"standard_conforming_strings", "off"},
  }));
  auto grant = GrantFor("bob", pgward::v1::MODE_READ_ONLY);
  (*grant.mutable_startup_parameters())[name] = value;
  INFO(name << "=" << value);
  CHECK_FALSE(UpstreamStartupParameters(grant).ok());
}

TEST_CASE("a watched setting that changes after login is reported with its end reason", "[upstream][pinned]") {
  ParameterWatch watch(Pairs{{"application_name", "pgward:alice"},
                             {"client_encoding", "UTF8"},
                             {"standard_conforming_strings", "on"},
                             {"session_authorization", "app"},
                             {"is_superuser", "off"},
                             {"TimeZone", "UTC"}});
  auto [name, value, reason] = GENERATE(table<std::string, std::string, std::string>({
      {"application_name", "x", "identity_changed"},
      {"session_authorization", "postgres", "identity_changed"},
      {"is_superuser", "on", "identity_changed"},
      {"client_encoding", "SJIS", "lexing_setting_changed"},
      {"standard_conforming_strings", "off", "lexing_setting_changed"},
      {"Standard_Conforming_Strings", "off", "lexing_setting_changed"},
  }));
  INFO(name << "=" << value);
  auto change = watch.Check(name, value);
  REQUIRE(change.has_value());
  CHECK(change->end_reason == reason);
  CHECK_THAT(change->message, Catch::Contains("was changed by a statement it ran"));
}

TEST_CASE("unwatched settings and unchanged values pass the watch", "[upstream][pinned]") {
  ParameterWatch watch(Pairs{{"application_name", "pgward:alice"}, {"client_encoding", "UTF8"}});
  CHECK_FALSE(watch.Check("application_name", "pgward:alice").has_value());
  CHECK_FALSE(watch.Check("client_encoding", "UTF8").has_value());
  CHECK_FALSE(watch.Check("TimeZone", "Europe/Paris").has_value());
  CHECK_FALSE(watch.Check("DateStyle", "SQL, DMY").has_value());
  // Watched, but never reported at login: fail closed.
  CHECK(watch.Check("is_superuser", "off").has_value());
}
