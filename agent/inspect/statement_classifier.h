// ClassifyStatement: reads one statement's libpg_query JSON parse tree and decides its policy
// class and whether it tampers with the session identity or read-only mode. Internal to inspect.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {

struct Classification {
  StatementClass statement_class = StatementClass::kUnknown;
  bool tampers_identity = false;
  bool changes_read_only = false;
  std::string deallocate_name;
};

// `stmt` is the value of one "stmt" member of pg_query_parse output: {"SelectStmt": {...}}.
// Never throws; anything it does not understand is kUnknown (policy treats that fail closed).
Classification ClassifyStatement(const nlohmann::json& stmt);

}  // namespace pgward::inspect
