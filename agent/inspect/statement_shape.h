// StatementShape and ShapeEntry: one analysis per statement shape. A shape is a SQL text's
// pg_query_scan tokens with every byte kept except the contents of its constants; a ShapeEntry
// is the full analysis of one text, reused for another text of the same shape only when no part
// of that analysis can depend on a constant's value. Internal to inspect; SqlAnalyzer owns the
// cache. The soundness argument is in statement_shape.cc.
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

struct StatementShape {
  // Equal keys: the same token kinds, and the same bytes everywhere except inside constants of the
  // same kind and prefix (integer, numeric, '...', E'...', B'...', X'...').
  std::string key;
  std::vector<SqlToken> tokens;
  std::vector<size_t> constants;  // indexes into tokens, in text order
};

// The shape of `sql`; nullopt when the text is not one the cache handles: it does not lex, holds a
// NUL byte or no constant at all (the exact-text cache serves those), or holds a token whose
// meaning the cache does not model: U&'...', U&"...", UESCAPE, dollar quotes.
std::optional<StatementShape> ShapeOfText(std::string_view sql);

// What the full analysis of one statement knows beyond its AnalyzedStatement.
struct StatementDetail {
  size_t begin = 0;  // AnalyzedStatement::text is sql.substr(begin, end - begin)
  size_t end = 0;
  bool literal_independent = false;     // Classification::literal_independent
  std::vector<int> constant_locations;  // Classification::constant_locations
  std::string raw_normalized;           // pg_query_normalize output, before ReplaceRemainingLiterals
};

// A full analysis of one text, as SqlAnalyzer produces it.
struct FullAnalysis {
  std::vector<AnalyzedStatementPtr> statements;
  std::vector<StatementDetail> details;  // one per statement when the text parsed; else empty
  size_t tree_bytes = 0;                 // libpg_query's JSON parse tree of the whole text
};

class ShapeEntry {
 public:
  // The entry for `sql` (of shape `shape`); nullptr unless every statement parsed, its decision
  // read no constant, every constant token is an A_Const node of the tree (not an option value,
  // type modifier, file name or other value the grammar consumes itself), and its normalized
  // text keeps no constant.
  static std::shared_ptr<const ShapeEntry> Build(std::string_view sql, const StatementShape& shape,
                                                 const FullAnalysis& analysis);

  // The analysis of `sql`, whose shape key equals this entry's, each statement with its own text;
  // nullopt when the parse tree of `sql` could exceed max_tree_bytes (then only a full analysis
  // can tell).
  std::optional<std::vector<AnalyzedStatementPtr>> Instantiate(std::string_view sql, const StatementShape& shape,
                                                               size_t max_tree_bytes) const;

 private:
  // An offset in the text, as (constants wholly before it, bytes after the last of them), so it
  // maps onto a text whose constants have other lengths.
  struct Position {
    size_t constants_before = 0;
    size_t offset = 0;
  };
  struct Part {
    AnalyzedStatementPtr analysis;  // of the text the entry was built from
    Position begin, end;
  };

  static std::optional<Position> PositionOf(size_t offset, std::string_view sql, const StatementShape& shape);
  static size_t OffsetOf(const Position& position, const StatementShape& shape);

  std::vector<Part> parts_;
  size_t constant_count_ = 0;
  size_t tree_bytes_ = 0;
};

}  // namespace pgward::inspect
