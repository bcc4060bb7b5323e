// The agent's statement gate: see statement_policy.h.
#include "agent/session/statement_policy.h"

#include <array>

#include "absl/strings/str_cat.h"
#include "common/pgwire/messages.h"
#include "common/pgwire/sqlstate.h"
#include "common/util/log.h"

namespace pgward::agent {
namespace {

using inspect::ClassBit;
// Appendix A "Error Codes": program_limit_exceeded, statement_too_complex, insufficient_resources.
constexpr std::string_view kProgramLimitExceeded = "54000";
constexpr std::string_view kStatementTooComplex = "54001";
constexpr std::string_view kInsufficientResources = "53000";
using inspect::ClassSet;
using inspect::StatementClass;

constexpr std::array<StatementClass, 11> kAllClasses = {
    StatementClass::kRead,        StatementClass::kWrite,     StatementClass::kDdl,      StatementClass::kTransaction,
    StatementClass::kSession,     StatementClass::kCopyIn,    StatementClass::kCopyOut,  StatementClass::kPrivilege,
    StatementClass::kMaintenance, StatementClass::kProcedure, StatementClass::kUnknown};

PolicyDecision Refuse(std::string_view sqlstate, std::string reason) {
  return {false, std::string(sqlstate), std::move(reason)};
}

std::string ClassName(StatementClass c) { return std::string(inspect::StatementClassName(c)); }

// The refusal for a statement needing class `missing`, which the grant does not allow.
PolicyDecision RefuseClass(const pgward::v1::Policy& policy, const inspect::AnalyzedStatement& statement,
                           StatementClass missing) {
  std::string what = ClassName(missing) + " statements";
  if (missing == StatementClass::kProcedure) what = "procedure statements (caller-supplied code)";
  std::string reason;
  switch (policy.mode()) {
    case pgward::v1::MODE_READ_ONLY:
      reason = what + " are not allowed: this grant is read-only";
      break;
    case pgward::v1::MODE_READ_WRITE:
      reason = what + " are not allowed: read-write does not include running code; a grant must list the "
                      "procedure class for it";
      break;
    default:
      reason = what + " are not among the classes this grant allows";
      break;
  }
  if (missing != statement.statement_class && !statement.class_note.empty()) {
    absl::StrAppend(&reason, " (", AbslView(statement.class_note), ")");
  }
  return Refuse(pgwire::sqlstate::kInsufficientPrivilege, std::move(reason));
}

}  // namespace

ClassSet AllowedClasses(const pgward::v1::Policy& policy) {
  const ClassSet always = ClassBit(StatementClass::kTransaction) | ClassBit(StatementClass::kSession);
  switch (policy.mode()) {
    case pgward::v1::MODE_READ_ONLY:
      return always | ClassBit(StatementClass::kRead) | ClassBit(StatementClass::kCopyOut);
    case pgward::v1::MODE_READ_WRITE: {
      ClassSet all = 0;
      for (StatementClass c : kAllClasses) all |= ClassBit(c);
      return all & ~ClassBit(StatementClass::kProcedure);
    }
    case pgward::v1::MODE_STATEMENT_CLASSES: {
      ClassSet listed = always;
      for (const std::string& name : policy.statement_classes()) {
        auto c = inspect::StatementClassFromName(name);
        if (c.has_value() && *c != StatementClass::kUnknown) listed |= ClassBit(*c);
      }
      return listed;
    }
    default:
      return 0;
  }
}

bool AllowsClass(const pgward::v1::Policy& policy, StatementClass statement_class) {
  return (AllowedClasses(policy) & ClassBit(statement_class)) != 0;
}

bool AllowsSessionMonitoring(const pgward::v1::Policy& policy) { return policy.allow_monitoring(); }

PolicyDecision CheckStatement(const pgward::v1::Policy& policy, const inspect::AnalyzedStatement& statement) {
  using inspect::AnalysisLimit;
  switch (statement.limit) {
    case AnalysisLimit::kNone: break;
    case AnalysisLimit::kTooLarge:
      return Refuse(kProgramLimitExceeded, "statement too large: pgward analyzes statements of up to 1 MiB (and parse trees of up "
                             "to 16 MiB); split it, or load data with COPY");
    case AnalysisLimit::kTooComplex:
      return Refuse(kStatementTooComplex, "statement too complex: it is nested too deeply for pgward to analyze");
    case AnalysisLimit::kNoResources:
      return Refuse(kInsufficientResources, "the agent has no resources to analyze this statement now; try again");
  }
  if (policy.mode() == pgward::v1::MODE_UNSPECIFIED) {
    return Refuse(pgwire::sqlstate::kInsufficientPrivilege, "the grant has no mode; ask an administrator to fix it");
  }
  if (!statement.parsed) {
    // libpg_query is the PostgreSQL 15 grammar: what it cannot parse, the agent cannot judge.
    return Refuse(pgwire::sqlstate::kSyntaxError,
                  absl::StrCat("the statement could not be parsed: ", AbslView(statement.parse_error)));
  }
  if (statement.tampers_identity) {
    return Refuse(pgwire::sqlstate::kInsufficientPrivilege,
                  "statements that change application_name, pgward.* settings, the role or the session "
                  "authorization are not allowed: pgward sets them to attribute the session");
  }
  if (statement.changes_lexing) {
    return Refuse(pgwire::sqlstate::kInsufficientPrivilege,
                  "statements that change standard_conforming_strings, backslash_quote or client_encoding are not "
                  "allowed: pgward reads every statement with the values it set at login, as the server must");
  }
  if (!statement.monitoring.empty() && !AllowsSessionMonitoring(policy)) {
    return Refuse(pgwire::sqlstate::kInsufficientPrivilege,
                  absl::StrCat(AbslView(statement.monitoring),
                               " shows other sessions' statements, locks or connections; pgward does not allow it"));
  }
  if (policy.mode() == pgward::v1::MODE_READ_ONLY && statement.changes_read_only) {
    return Refuse(pgwire::sqlstate::kInsufficientPrivilege,
                  "this grant is read-only; the session cannot be made read-write");
  }
  const ClassSet missing = statement.required_classes & ~AllowedClasses(policy);
  if (missing == 0) return {};
  // Name the statement's own class if that is missing, else the first class its parts need.
  if (missing & ClassBit(statement.statement_class)) return RefuseClass(policy, statement, statement.statement_class);
  for (StatementClass c : kAllClasses) {
    if (missing & ClassBit(c)) return RefuseClass(policy, statement, c);
  }
  return RefuseClass(policy, statement, StatementClass::kUnknown);
}

std::string BuildRefusal(const PolicyDecision& decision, std::string_view principal, std::string_view connection) {
  std::string error;
  const bool policy_refusal = decision.sqlstate == pgwire::sqlstate::kInsufficientPrivilege;
  pgwire::AppendErrorResponse(
      error, "ERROR", decision.sqlstate, absl::StrCat("pgward: statement refused: ", AbslView(decision.reason)),
      absl::StrCat("principal \"", AbslView(principal), "\" on connection \"", AbslView(connection), "\""),
      policy_refusal ? "ask a pgward administrator for a grant that covers this statement" : "");
  return error;
}

std::string OwnedApplicationNameSet(std::string_view principal) {
  std::string quoted = "'";
  for (char c : absl::StrCat("pgward:", AbslView(principal))) {
    quoted.push_back(c);
    if (c == '\'') quoted.push_back('\'');
  }
  quoted.push_back('\'');
  return "SET application_name = " + quoted;
}

}  // namespace pgward::agent
