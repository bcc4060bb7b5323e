// Test fixture for StatementTracker tests: a fake clock and the real analyzer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "agent/inspect/sql_analyzer.h"
#include "agent/inspect/statement_tracker.h"

namespace pgward::inspect {

struct Fixture {
  int64_t now = 1'000'000;
  SqlAnalyzer analyzer;
  StatementTracker tracker{[this] { return now; }};

  std::vector<AnalyzedStatementPtr> Query(const std::string& sql) { return analyzer.AnalyzeQuery(sql); }
  AnalyzedStatementPtr Parse(const std::string& sql) { return analyzer.AnalyzeParse(sql); }
  std::string Rfq(char status = 'I') {
    auto r = tracker.OnReadyForQuery(status);
    REQUIRE(r.ok());
    return *r;
  }
};

}  // namespace pgward::inspect
