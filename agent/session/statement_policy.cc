#include "agent/session/statement_policy.h"

#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace pgward::agent {

using inspect::StatementClass;

PolicyDecision CheckStatement(const pgward::v1::Policy& policy, const inspect::AnalyzedStatement& statement) {
  if (statement.tampers_identity) {
    return {false,
            "statements that change application_name or pgward.* settings are not allowed: "
            "pgward sets them to attribute the session"};
  }
  const StatementClass cls = statement.statement_class;
  switch (policy.mode()) {
    case pgward::v1::MODE_READ_WRITE:
      return {};
    case pgward::v1::MODE_READ_ONLY: {
      if (!statement.parsed) return {false, "the statement could not be parsed, and this grant is read-only"};
      if (statement.changes_read_only) return {false, "this grant is read-only; the session cannot be made read-write"};
      bool ok = cls == StatementClass::kRead || cls == StatementClass::kTransaction ||
                cls == StatementClass::kSession || cls == StatementClass::kCopyOut;
      if (ok) return {};
      return {false, absl::StrCat(AbslView(inspect::StatementClassName(cls)),
                                  " statements are not allowed: this grant is read-only")};
    }
    case pgward::v1::MODE_STATEMENT_CLASSES: {
      if (!statement.parsed) return {false, "the statement could not be parsed, so its class is unknown"};
      if (cls == StatementClass::kTransaction || cls == StatementClass::kSession) return {};
      for (const std::string& name : policy.statement_classes()) {
        if (name == inspect::StatementClassName(cls)) return {};
      }
      return {false, absl::StrCat(AbslView(inspect::StatementClassName(cls)),
                                  " statements are not among the classes this grant allows")};
    }
    default:
      return {false, "the grant has no mode; ask an administrator to fix it"};
  }
}

}  // namespace pgward::agent
