// The agent's statement gate: whether one analyzed statement may run under a session's policy,
// the ErrorResponse a refused one gets, and the application_name rewrite drivers rely on.
#pragma once

#include <string>
#include <string_view>

#include "agent/inspect/sql_analyzer.h"
#include "pgward/v1/types.pb.h"

namespace pgward::agent {

struct PolicyDecision {
  bool allowed = true;
  std::string sqlstate;  // when refused: 42501 (policy), 42601 (unparsable), 54000/54001 (limits), 53000
  std::string reason;    // why it was refused, shown to the caller
};

// The classes a grant allows. Read-only: read, transaction, session, copy_out. Read-write:
// every class except procedure (caller-supplied code). Statement classes: those listed ("code"
// is accepted for "procedure"), plus transaction and session.
inspect::ClassSet AllowedClasses(const pgward::v1::Policy& policy);
bool AllowsClass(const pgward::v1::Policy& policy, inspect::StatementClass statement_class);

// Whether a grant may read the views that show other sessions (pg_stat_activity, pg_locks, ...):
// `pgwardctl grant create --allow-monitoring`, off by default.
bool AllowsSessionMonitoring(const pgward::v1::Policy& policy);

// Refused under every mode: text over a size or depth limit, text libpg_query cannot parse,
// identity tampering (application_name, pgward.*, role, session_authorization), changes to the
// settings the server lexes SQL with, and monitoring views (AllowsSessionMonitoring). Read-only
// also refuses anything that could turn read-only off. Then every class the statement requires
// must be allowed (AllowedClasses).
PolicyDecision CheckStatement(const pgward::v1::Policy& policy, const inspect::AnalyzedStatement& statement);

// The ErrorResponse (severity ERROR) for a refused statement: "pgward: statement refused: <reason>".
std::string BuildRefusal(const PolicyDecision& decision, std::string_view principal, std::string_view connection);

// Drivers set application_name after login (pgJDBC sends SET application_name = '...').
// Refusing would break them; letting it through would lose the attribution. Such a statement
// (AnalyzedStatement::plain_application_name_set) is rewritten to set the value pgward owns, so
// the driver sees success and Postgres keeps pgward:<principal>.
std::string OwnedApplicationNameSet(std::string_view principal);

}  // namespace pgward::agent
