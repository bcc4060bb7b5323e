// StatementShape: a SQL text's literal-free key (its pg_query_scan tokens, every byte kept except
// the constants, which become markers) and ShapeEntry, the analysis of one text of that shape,
// reused for texts that differ from it only in constants whose values the analysis did not read.
// Internal to inspect; SqlAnalyzer owns the cache. The soundness argument is in bench/NOTES.md
// section 7 and in the comments of statement_shape.cc.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/inspect/literals.h"
#include "agent/inspect/sql_analyzer.h"

namespace pgward::inspect {

// A constant token (integer, numeric, '...', E'...', $$...$$, B'...', X'...'; not U&'...').
struct ShapeConstant {
  int start = 0;  // byte offsets into the text
  int end = 0;
  int token = 0;  // index in StatementShape::tokens
};

struct StatementShape {
  // Every token's kind and extent, then the text with each constant replaced by NUL and a kind
  // byte. Equal keys: the same token sequence, byte for byte, except the constants' contents.
  std::string key;
  std::vector<SqlToken> tokens;
  std::vector<ShapeConstant> constants;  // in text order
};

// nullopt if the text does not lex or holds a NUL byte.
std::optional<StatementShape> ShapeOfText(std::string_view sql);

// What the full analysis knows about one statement beyond its AnalyzedStatement.
struct StatementLayout {
  size_t begin = 0;  // the statement's (trimmed) text: sql.substr(begin, end - begin)
  size_t end = 0;
  std::vector<int> constant_locations;  // Classification::constant_locations
  std::string raw_normalized;           // pg_query_normalize output, before ReplaceRemainingLiterals
  bool literal_independent = false;     // Classification::literal_independent
};

class ShapeEntry {
 public:
  // The entry for `sql` (with shape `shape`), fully analyzed as `statements`; nullptr when that
  // analysis may not be reused for other constant values: a statement that did not parse, is not
  // literal-independent, or whose normalized text would keep one of the constants treated as
  // variable (then that constant's value would show in it).
  static std::shared_ptr<const ShapeEntry> Build(std::string_view sql, const StatementShape& shape,
                                                 const std::vector<AnalyzedStatementPtr>& statements,
                                                 const std::vector<StatementLayout>& layouts);

  // The analysis of `sql`, whose shape key equals this entry's, with its own statement texts;
  // nullopt when a constant this entry holds fixed has a different value in `sql`.
  std::optional<std::vector<AnalyzedStatementPtr>> Instantiate(std::string_view sql,
                                                               const StatementShape& shape) const;

 private:
  // An offset in the text, as (constants wholly before it, bytes after the last of them), so it
  // maps onto a text whose constants have other lengths.
  struct Position {
    size_t constants_before = 0;
    size_t offset = 0;
  };
  struct Part {
    AnalyzedStatementPtr analysis;  // text left empty: each use gets its own
    Position begin, end;
  };

  std::vector<bool> variable_;     // per constant: its value may differ
  std::vector<std::string> fixed_; // the values of the other constants, in order
  std::vector<Part> parts_;
};

}  // namespace pgward::inspect
