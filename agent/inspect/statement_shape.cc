// StatementShape and ShapeEntry: the shape key and the rules for reusing an analysis.
//
// Why a reused analysis equals a full one. Let A be the text an entry was built from and B a
// text with the same key: the same token kinds, and the same bytes outside the constants, whose
// kind and prefix match too ('...' never shares a shape with E'...', 1 never with 1.0 or with
// 2147483648, which Postgres lexes as numeric). B was scanned by pg_query_scan, the same lexer
// the parser uses, so a constant Postgres cannot lex (a bad escape or byte sequence) has no shape
// and gets a full analysis.
//  - Parse tree. The grammar sees token kinds, and where it wraps a constant in an A_Const node
//    it passes the value on without deciding anything from it. The places where it does read a
//    value (float(p) picks float4 or float8; option values, type modifiers of some forms, COPY
//    file names, NOTIFY payloads, FETCH counts, enum labels) keep it in other nodes or fields.
//    Build() requires every constant token to be an A_Const (at its start, or at the '-' the
//    grammar folds into a negative number), so B's tree is A's with other A_Const values, at
//    shifted locations.
//  - Classification. ConstantReader is the classifier's only way to look at a value (and it
//    counts asking whether an argument is a constant at all); an analysis that read none decides
//    the same for B. SET x = 1, set_config(...), EXPLAIN (ANALYZE 1), BEGIN READ WRITE read one
//    and are never reused.
//  - Fingerprint. pg_query_fingerprint ignores A_Const values and locations: equal for B.
//  - Normalized text. pg_query_normalize replaces the A_Const nodes it walks to by $n, but skips
//    type modifiers (varchar(10)) and most utility statements. Build() requires its output for A
//    to lex without any constant token: then every constant of A lay inside a replaced token, the
//    same tokens are replaced in B (they are found from tree locations, with the scanner), and the
//    bytes between them are equal, so B's normalized text is A's. Dollar quotes are not cached: the
//    normalizer finds some option strings by searching the text for a quote character, which the
//    body of a dollar-quoted constant could hold anywhere.
//  - Statement text. Statement boundaries come from tree locations outside constants; they map
//    onto B by counting constants (Position), so each statement gets B's own bytes.
//  - Limits. B is no longer than the texts the analyzer analyzes inline (SqlAnalyzer checks); its
//    tree nests as deep as A's; Instantiate() bounds its tree size from A's.
#include "agent/inspect/statement_shape.h"

#include <algorithm>
#include <cstdint>

namespace pgward::inspect {
namespace {

bool IsConstant(int kind) {
  return kind == kTokenIconst || kind == kTokenFconst || kind == kTokenSconst || kind == kTokenBconst ||
         kind == kTokenXconst || kind == kTokenUsconst;
}

void AppendUint32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// The byte standing for a constant's contents in the key, or 0 for a constant not cached.
char ConstantTag(int kind, std::string_view token) {
  if (token.empty()) return 0;
  const char first = token.front();
  switch (kind) {
    case kTokenIconst:
    case kTokenFconst: return '#';
    case kTokenSconst: return first == '\'' || first == 'e' || first == 'E' ? first : 0;  // not $$
    case kTokenBconst: return first == 'b' || first == 'B' ? first : 0;
    case kTokenXconst: return first == 'x' || first == 'X' ? first : 0;
    default: return 0;
  }
}

bool IsIdentifierByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || c == '_' || c == '$' ||
         u >= 0x80;
}

// Could `text` hold a constant token? Every constant holds a quote or starts with a digit (or '.'
// then a digit) that no identifier byte precedes; dollar quotes start with '$' and no digit. False
// positives only cost a scan.
bool MayHoldConstant(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\'') return true;
    if (c == '$' && (i + 1 == text.size() || !(text[i + 1] >= '0' && text[i + 1] <= '9'))) return true;
    if (c >= '0' && c <= '9' && (i == 0 || !IsIdentifierByte(text[i - 1]))) return true;
  }
  return false;
}

size_t Digits(size_t n) {
  size_t digits = 1;
  while (n >= 10) n /= 10, ++digits;
  return digits;
}

}  // namespace

std::optional<StatementShape> ShapeOfText(std::string_view sql) {
  if (sql.find('\0') != std::string_view::npos) return std::nullopt;
  auto tokens = ScanSql(sql);
  if (!tokens) return std::nullopt;
  StatementShape shape;
  shape.key.reserve(sql.size() + 8 * tokens->size());
  size_t copied = 0;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const SqlToken& t = (*tokens)[i];
    if (t.kind == kTokenUident || t.kind == kTokenUsconst || t.kind == kTokenUescape) return std::nullopt;
    const auto start = static_cast<size_t>(t.start), end = static_cast<size_t>(t.end);
    if (start < copied) return std::nullopt;  // tokens overlap: not a text this code understands
    // Bytes between tokens (whitespace) hold no NUL, so the NUL opening each token keeps the key
    // unambiguous; a token's own bytes are length-prefixed.
    shape.key.append(sql.substr(copied, start - copied));
    shape.key.push_back('\0');
    AppendUint32(shape.key, static_cast<uint32_t>(t.kind));
    const std::string_view bytes = sql.substr(start, end - start);
    if (IsConstant(t.kind)) {
      const char tag = ConstantTag(t.kind, bytes);
      if (tag == 0) return std::nullopt;
      shape.key.push_back(tag);
      shape.constants.push_back(i);
    } else {
      AppendUint32(shape.key, static_cast<uint32_t>(bytes.size()));
      shape.key.append(bytes);
    }
    copied = end;
  }
  if (shape.constants.empty()) return std::nullopt;
  shape.key.append(sql.substr(copied));
  shape.tokens = *std::move(tokens);
  return shape;
}

std::optional<ShapeEntry::Position> ShapeEntry::PositionOf(size_t offset, std::string_view sql,
                                                           const StatementShape& shape) {
  if (offset > sql.size()) return std::nullopt;
  Position position;
  size_t previous_end = 0;
  for (size_t index : shape.constants) {
    const SqlToken& c = shape.tokens[index];
    const auto start = static_cast<size_t>(c.start), end = static_cast<size_t>(c.end);
    if (end <= offset) {
      ++position.constants_before;
      previous_end = end;
    } else if (start < offset) {
      return std::nullopt;  // inside a constant: has no place in another text of this shape
    } else {
      break;
    }
  }
  position.offset = offset - previous_end;
  return position;
}

size_t ShapeEntry::OffsetOf(const Position& position, const StatementShape& shape) {
  if (position.constants_before == 0) return position.offset;
  return static_cast<size_t>(shape.tokens[shape.constants[position.constants_before - 1]].end) + position.offset;
}

std::shared_ptr<const ShapeEntry> ShapeEntry::Build(std::string_view sql, const StatementShape& shape,
                                                    const FullAnalysis& analysis) {
  if (analysis.statements.empty() || analysis.details.size() != analysis.statements.size()) return nullptr;

  // Every constant token must be an A_Const of the tree.
  std::vector<bool> covered(shape.constants.size(), false);
  auto token_at = [&](int location) -> std::optional<size_t> {
    auto it = std::lower_bound(shape.tokens.begin(), shape.tokens.end(), location,
                               [](const SqlToken& t, int at) { return t.start < at; });
    if (it == shape.tokens.end() || it->start != location) return std::nullopt;
    return static_cast<size_t>(it - shape.tokens.begin());
  };
  auto cover = [&](size_t token) {
    auto it = std::lower_bound(shape.constants.begin(), shape.constants.end(), token);
    if (it != shape.constants.end() && *it == token) covered[it - shape.constants.begin()] = true;
  };
  for (const StatementDetail& detail : analysis.details) {
    for (int location : detail.constant_locations) {
      auto token = token_at(location);
      if (!token) continue;
      // -5: the grammar folds the minus into the constant and puts its location there.
      if (shape.tokens[*token].kind == kTokenMinus && *token + 1 < shape.tokens.size()) cover(*token + 1);
      cover(*token);
    }
  }
  if (std::find(covered.begin(), covered.end(), false) != covered.end()) return nullptr;

  auto entry = std::make_shared<ShapeEntry>();
  for (size_t i = 0; i < analysis.statements.size(); ++i) {
    const AnalyzedStatementPtr& statement = analysis.statements[i];
    const StatementDetail& detail = analysis.details[i];
    if (!statement->parsed || statement->limit != AnalysisLimit::kNone || !detail.literal_independent) return nullptr;
    if (statement->normalized.empty() || statement->fingerprint.empty()) return nullptr;
    if (MayHoldConstant(detail.raw_normalized)) {  // usually not: "... WHERE aid = $1"
      auto normalized_tokens = ScanSql(detail.raw_normalized);
      if (!normalized_tokens) return nullptr;
      for (const SqlToken& t : *normalized_tokens) {
        if (IsConstant(t.kind)) return nullptr;  // a constant the normalizer kept: its value shows
      }
    }
    auto begin = PositionOf(detail.begin, sql, shape);
    auto end = PositionOf(detail.end, sql, shape);
    if (!begin || !end || detail.begin > detail.end) return nullptr;
    entry->parts_.push_back({statement, *begin, *end});
  }
  entry->constant_count_ = shape.constants.size();
  entry->tree_bytes_ = analysis.tree_bytes;
  return entry;
}

std::optional<std::vector<AnalyzedStatementPtr>> ShapeEntry::Instantiate(std::string_view sql,
                                                                         const StatementShape& shape,
                                                                         size_t max_tree_bytes) const {
  if (shape.constants.size() != constant_count_) return std::nullopt;
  // The tree of `sql` differs from the entry's in the A_Const values (JSON escaping takes at most 6
  // bytes per byte; 64 more per constant for member names a zero or empty value leaves out) and in
  // location numbers, each in a member of at least 12 bytes that gains fewer digits than `sql`'s
  // length has.
  size_t constant_bytes = 0;
  for (size_t index : shape.constants) constant_bytes += shape.tokens[index].end - shape.tokens[index].start;
  const size_t bound =
      tree_bytes_ + tree_bytes_ / 12 * Digits(sql.size()) + 6 * constant_bytes + 64 * shape.constants.size();
  if (bound > max_tree_bytes) return std::nullopt;

  std::vector<AnalyzedStatementPtr> out;
  out.reserve(parts_.size());
  for (const Part& part : parts_) {
    const size_t begin = OffsetOf(part.begin, shape), end = OffsetOf(part.end, shape);
    if (begin > end || end > sql.size()) return std::nullopt;
    auto statement = std::make_shared<AnalyzedStatement>(*part.analysis);
    statement->text = std::string(sql.substr(begin, end - begin));
    out.push_back(std::move(statement));
  }
  return out;
}

}  // namespace pgward::inspect
