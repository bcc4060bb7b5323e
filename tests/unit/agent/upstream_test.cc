// Pure helpers of the upstream login: startup option escaping and credential references.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "agent/upstream/credential_resolver.h"
#include "agent/upstream/upstream_login.h"

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
