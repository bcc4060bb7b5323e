// How the gateway combines several matching grants into one session policy.
#include <catch2/catch.hpp>

#include "gateway/broker/session_broker.h"

using pgward::gateway::EffectivePolicy;

namespace {
pgward::v1::Grant GrantOf(const std::string& id, pgward::v1::Mode mode, std::vector<std::string> classes = {},
                          bool capture = false) {
  pgward::v1::Grant grant;
  grant.set_id(id);
  grant.mutable_policy()->set_mode(mode);
  for (auto& c : classes) grant.mutable_policy()->add_statement_classes(c);
  grant.mutable_policy()->set_capture_literals(capture);
  return grant;
}
}  // namespace

TEST_CASE("read-write beats classes beats read-only, and the winning grant is the rule", "[broker]") {
  auto policy = EffectivePolicy({GrantOf("g1", pgward::v1::MODE_READ_ONLY),
                                 GrantOf("g2", pgward::v1::MODE_READ_WRITE),
                                 GrantOf("g3", pgward::v1::MODE_STATEMENT_CLASSES, {"read"})});
  CHECK(policy.mode() == pgward::v1::MODE_READ_WRITE);
  CHECK(policy.grant_id() == "g2");
}

TEST_CASE("class grants combine into their union", "[broker]") {
  auto policy = EffectivePolicy({GrantOf("g1", pgward::v1::MODE_STATEMENT_CLASSES, {"read", "copy_out"}),
                                 GrantOf("g2", pgward::v1::MODE_STATEMENT_CLASSES, {"write", "read"}),
                                 GrantOf("g3", pgward::v1::MODE_READ_ONLY)});
  CHECK(policy.mode() == pgward::v1::MODE_STATEMENT_CLASSES);
  std::vector<std::string> classes(policy.statement_classes().begin(), policy.statement_classes().end());
  CHECK(classes == std::vector<std::string>{"copy_out", "read", "write"});
}

TEST_CASE("literal capture is on when any matching grant asks for it", "[broker]") {
  auto policy = EffectivePolicy({GrantOf("g1", pgward::v1::MODE_READ_WRITE),
                                 GrantOf("g2", pgward::v1::MODE_READ_ONLY, {}, true)});
  CHECK(policy.capture_literals());
  CHECK(policy.mode() == pgward::v1::MODE_READ_WRITE);
}

TEST_CASE("a single read-only grant stays read-only", "[broker]") {
  auto policy = EffectivePolicy({GrantOf("only", pgward::v1::MODE_READ_ONLY)});
  CHECK(policy.mode() == pgward::v1::MODE_READ_ONLY);
  CHECK(policy.grant_id() == "only");
  CHECK_FALSE(policy.capture_literals());
}

TEST_CASE("a classes grant with code on top of a read-write grant gives both", "[broker]") {
  auto policy = EffectivePolicy({GrantOf("g1", pgward::v1::MODE_READ_WRITE),
                                 GrantOf("g2", pgward::v1::MODE_STATEMENT_CLASSES, {"read", "procedure"})});
  CHECK(policy.mode() == pgward::v1::MODE_STATEMENT_CLASSES);
  std::vector<std::string> classes(policy.statement_classes().begin(), policy.statement_classes().end());
  CHECK(classes == std::vector<std::string>{"copy_in", "copy_out", "ddl", "maintenance", "privilege", "procedure",
                                            "read", "session", "transaction", "write"});
}

TEST_CASE("a read-write grant with a classes grant that adds no code stays read-write", "[broker]") {
  auto policy = EffectivePolicy({GrantOf("g1", pgward::v1::MODE_READ_WRITE),
                                 GrantOf("g2", pgward::v1::MODE_STATEMENT_CLASSES, {"read", "ddl"})});
  CHECK(policy.mode() == pgward::v1::MODE_READ_WRITE);
  CHECK(policy.statement_classes_size() == 0);
}

TEST_CASE("monitoring is allowed when any matching grant allows it, and off by default", "[broker]") {
  CHECK_FALSE(EffectivePolicy({GrantOf("g1", pgward::v1::MODE_READ_WRITE)}).allow_monitoring());
  auto monitoring = GrantOf("g2", pgward::v1::MODE_READ_ONLY);
  monitoring.mutable_policy()->set_allow_monitoring(true);
  CHECK(EffectivePolicy({GrantOf("g1", pgward::v1::MODE_READ_WRITE), monitoring}).allow_monitoring());
}
