// ClassifyStatement: reads one statement's libpg_query JSON parse tree and decides its policy
// classes and whether it tampers with the session identity, read-only mode or the settings the
// server lexes SQL with. Internal to inspect.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {

struct Classification {
  StatementClass statement_class = StatementClass::kUnknown;
  ClassSet required_classes = 0;  // statement_class plus what its parts need
  std::string class_note;         // why required_classes holds more than statement_class
  bool tampers_identity = false;
  bool changes_read_only = false;
  bool changes_lexing = false;
  std::string monitoring;         // a monitoring view or function the statement reads
  bool plain_application_name_set = false;
  std::string deallocate_name;
  bool resets_session = false;    // RESET ALL or DISCARD ALL
  // No part of the decision read a constant's value (or asked whether an argument is a
  // constant): the same tree with other constant values is classified the same way.
  bool literal_independent = false;
  std::vector<int> constant_locations;  // every A_Const node's "location", in walk order
};

// `stmt` is the value of one "stmt" member of pg_query_parse output: {"SelectStmt": {...}}.
// The whole tree is walked (subqueries, CTEs, function arguments, EXPLAIN and PREPARE bodies,
// DDL expressions), iteratively: a deep tree cannot exhaust the stack here. Never throws;
// anything it does not understand is kUnknown (policy treats that fail closed).
Classification ClassifyStatement(const nlohmann::json& stmt);

}  // namespace pgward::inspect
