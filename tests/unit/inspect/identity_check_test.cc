// Tests for IdentityCheck (the agent's read-back of identity and lexing settings) and for how the
// tracker keeps the check's responses apart from the caller's, pipelined or not.
#include "agent/inspect/identity_check.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "tests/unit/inspect/tracker_fixture.h"

namespace pgward::inspect {
namespace {

std::string Row(const std::string& value) {
  std::string body("\x00\x01", 2);
  const uint32_t n = value.size();
  body += static_cast<char>(n >> 24);
  body += static_cast<char>(n >> 16);
  body += static_cast<char>(n >> 8);
  body += static_cast<char>(n);
  return body + value;
}

IdentityCheck::Verdict Run(const std::vector<std::string>& values) {
  IdentityCheck check({"alice-bot", "s1", "pgward:alice-bot"});
  check.Begin();
  for (const auto& v : values) REQUIRE(check.OnDataRow(Row(v)).ok());
  return check.Finish();
}

TEST_CASE("the check's verdict compares what SHOW answered with the login values", "[identity_check]") {
  using V = IdentityCheck::Verdict;
  CHECK(Run({"alice-bot", "s1", "pgward:alice-bot", "on", "UTF8"}) == V::kIntact);
  CHECK(Run({"alice-bot", "s1", "pgward:alice-bot", "on", "LATIN1"}) == V::kIntact);  // ASCII-safe
  CHECK(Run({"bot-b", "s1", "pgward:alice-bot", "on", "UTF8"}) == V::kIdentityChanged);
  CHECK(Run({"alice-bot", "s2", "pgward:alice-bot", "on", "UTF8"}) == V::kIdentityChanged);
  CHECK(Run({"alice-bot", "s1", "evil", "on", "UTF8"}) == V::kIdentityChanged);
  CHECK(Run({"alice-bot", "s1", "pgward:alice-bot", "off", "UTF8"}) == V::kLexingChanged);
  CHECK(Run({"alice-bot", "s1", "pgward:alice-bot", "on", "SJIS"}) == V::kLexingChanged);
  CHECK(Run({"alice-bot", "s1", "pgward:alice-bot", "on", "gb18030"}) == V::kLexingChanged);
  CHECK(Run({"alice-bot", "s1", "pgward:alice-bot", "on"}) == V::kUnknown);  // a row missing
  CHECK(Run({}) == V::kUnknown);
}

TEST_CASE("a failed, NULL or oversized answer is never taken as intact", "[identity_check]") {
  IdentityCheck check({"a", "s", "pgward:a"});
  check.Begin();
  check.OnError();  // 25P02 in an aborted transaction
  CHECK(check.Finish() == IdentityCheck::Verdict::kUnknown);
  check.Begin();
  REQUIRE(check.OnDataRow(std::string("\x00\x01\xff\xff\xff\xff", 6)).ok());
  CHECK(check.Finish() == IdentityCheck::Verdict::kUnknown);
  check.Begin();
  check.OnOversizedRow();
  CHECK(check.Finish() == IdentityCheck::Verdict::kIdentityChanged);
  check.Begin();
  CHECK_FALSE(check.OnDataRow(std::string("\x00\x02", 2)).ok());                // two columns
  CHECK_FALSE(check.OnDataRow(std::string("\x00\x01\x00\x00\x00\x05" "ab", 8)).ok());  // short value
  CHECK_FALSE(check.OnDataRow(std::string("\x00", 1)).ok());
}

TEST_CASE("the check query reads settings with SHOW only", "[identity_check]") {
  const std::string q(IdentityCheck::QueryText());
  SqlAnalyzer analyzer;
  auto statements = analyzer.AnalyzeQuery(q);
  REQUIRE(statements.size() == 5);
  for (const auto& s : statements) {
    CHECK(s->statement_class == StatementClass::kSession);
    CHECK(s->normalized.rfind("SHOW ", 0) == 0);
  }
}

TEST_CASE("the agent's query between caller round trips is never recorded", "[tracker][identity_check]") {
  Fixture f;
  f.tracker.OnQuery(f.Query("select 1"));
  REQUIRE(f.tracker.OnAgentQuery());
  f.tracker.OnQuery(f.Query("select 2"));  // pipelined before any answer
  CHECK_FALSE(f.tracker.AgentQueryAtHead());
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.Rfq().empty());
  CHECK(f.tracker.AgentQueryAtHead());  // the relay keeps T/D/C of the check to itself
  CHECK(f.Rfq().empty());
  CHECK_FALSE(f.tracker.AgentQueryAtHead());
  REQUIRE(f.tracker.OnRowDescription().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.Rfq().empty());
  auto records = f.tracker.TakeRecords();
  REQUIRE(records.size() == 2);
  CHECK(records[0].statement->normalized == "select $1");
  CHECK(records[1].statement->normalized == "select $1");
  CHECK(f.tracker.PendingOperations() == 0);
}

TEST_CASE("after an extended Sync the check is tracked like a query of its own", "[tracker][identity_check]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("select $1"));
  f.tracker.OnBind("", "");
  f.tracker.OnExecute("");
  f.tracker.OnSync();
  REQUIRE(f.tracker.OnAgentQuery());
  REQUIRE(f.tracker.OnParseComplete().ok());
  REQUIRE(f.tracker.OnBindComplete().ok());
  REQUIRE(f.tracker.OnCommandComplete("SELECT 1").ok());
  CHECK(f.Rfq().empty());
  REQUIRE(f.tracker.AgentQueryAtHead());
  CHECK(f.Rfq('E').empty());  // e.g. the check failed with 25P02; the relay swallowed the error
  CHECK(f.tracker.TakeRecords().size() == 1);
  CHECK(f.tracker.PendingOperations() == 0);
}

TEST_CASE("a check the server would discard is not tracked", "[tracker][identity_check]") {
  Fixture f;
  f.tracker.OnParse("", f.Parse("select 1"));
  REQUIRE(f.tracker.OnErrorResponse("42601", "syntax error").ok());  // no Sync sent yet: skipping
  CHECK_FALSE(f.tracker.OnAgentQuery());
  f.tracker.OnSync();
  CHECK(f.Rfq().empty());
  CHECK(f.tracker.PendingOperations() == 0);
  CHECK(f.tracker.OnAgentQuery());
}

}  // namespace
}  // namespace pgward::inspect
