// Decides whether one analyzed statement may run under a session's policy.
#pragma once

#include <string>

#include "agent/inspect/sql_analyzer.h"
#include "pgward/v1/types.pb.h"

namespace pgward::agent {

struct PolicyDecision {
  bool allowed = true;
  std::string reason;  // why it was refused, shown to the caller
};

// Identity tampering (application_name, pgward.*) is refused under every mode: ARCHITECTURE.md
// section 3 promises callers cannot change them. Read-only allows reads, transaction control,
// session settings and COPY TO; explicit classes always include transaction and session.
PolicyDecision CheckStatement(const pgward::v1::Policy& policy, const inspect::AnalyzedStatement& statement);

}  // namespace pgward::agent
