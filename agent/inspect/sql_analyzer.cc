// SqlAnalyzer: libpg_query parse, normalize and fingerprint, with LRU caches by exact text and by
// statement shape.
#include "agent/inspect/sql_analyzer.h"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include <pg_query.h>  // defines PG_VERSION: keep it out of headers

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "agent/inspect/literals.h"
#include "agent/inspect/run_with_stack.h"
#include "agent/inspect/statement_classifier.h"
#include "agent/inspect/statement_shape.h"

namespace pgward::inspect {
namespace {

constexpr std::array<std::pair<StatementClass, std::string_view>, 11> kClassNames = {{
    {StatementClass::kRead, "read"},
    {StatementClass::kWrite, "write"},
    {StatementClass::kDdl, "ddl"},
    {StatementClass::kTransaction, "transaction"},
    {StatementClass::kSession, "session"},
    {StatementClass::kCopyIn, "copy_in"},
    {StatementClass::kCopyOut, "copy_out"},
    {StatementClass::kPrivilege, "privilege"},
    {StatementClass::kMaintenance, "maintenance"},
    {StatementClass::kProcedure, "procedure"},
    {StatementClass::kUnknown, "unknown"},
}};

constexpr size_t kLimitedTextBytes = 256;  // what an over-limit statement keeps of its text

// absl::string_view is not std::string_view in this Abseil build, so trim locally.
std::string_view Trim(std::string_view s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The deepest nesting of objects and arrays in a JSON text, counted without building it.
size_t JsonDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// One statement of a parsed string: its text slice and its parse tree.
struct ParsedStatement {
  std::string_view text;
  nlohmann::json tree;
};

// `raw` gets pg_query_normalize's own output (the shape cache checks it keeps no constant).
std::string Normalize(const std::string& text, std::string& raw) {
  PgQueryNormalizeResult result = pg_query_normalize(text.c_str());
  raw = result.error == nullptr && result.normalized_query != nullptr ? result.normalized_query : "";
  pg_query_free_normalize_result(result);
  if (raw.empty()) return raw;
  // pg_query_normalize leaves the constants of many utility statements in place.
  return ReplaceRemainingLiterals(raw).value_or("");
}

std::string Fingerprint(const std::string& text) {
  PgQueryFingerprintResult result = pg_query_fingerprint(text.c_str());
  std::string out = result.error == nullptr && result.fingerprint_str != nullptr ? result.fingerprint_str : "";
  pg_query_free_fingerprint_result(result);
  return out;
}

AnalyzedStatementPtr Unparsed(std::string_view sql, std::string parse_error) {
  auto s = std::make_shared<AnalyzedStatement>();
  s->text = std::string(Trim(sql));
  s->parse_error = std::move(parse_error);
  return s;
}

AnalyzedStatementPtr OverLimit(std::string_view sql, AnalysisLimit limit) {
  auto s = std::make_shared<AnalyzedStatement>();
  s->text = std::string(Trim(sql).substr(0, kLimitedTextBytes));
  s->limit = limit;
  return s;
}

// `sql` is the whole text `parsed` is a slice of.
AnalyzedStatementPtr Analyze(const ParsedStatement& parsed, const std::string& sql, StatementDetail& detail) {
  auto s = std::make_shared<AnalyzedStatement>();
  const std::string_view text = Trim(parsed.text);
  s->text = std::string(text);
  detail.begin = static_cast<size_t>(text.data() - sql.data());
  detail.end = detail.begin + text.size();
  s->parsed = true;
  s->normalized = Normalize(s->text, detail.raw_normalized);
  s->fingerprint = Fingerprint(s->text);
  Classification c = ClassifyStatement(parsed.tree);
  detail.literal_independent = c.literal_independent;
  detail.constant_locations = std::move(c.constant_locations);
  s->statement_class = c.statement_class;
  s->required_classes = c.required_classes;
  s->class_note = std::move(c.class_note);
  s->tampers_identity = c.tampers_identity;
  s->changes_read_only = c.changes_read_only;
  s->changes_lexing = c.changes_lexing;
  s->monitoring = std::move(c.monitoring);
  s->plain_application_name_set = c.plain_application_name_set;
  s->deallocate_name = std::move(c.deallocate_name);
  s->resets_session = c.resets_session;
  return s;
}

// Parses with the real Postgres grammar and analyzes each statement. Statement boundaries come
// from the parse tree's stmt_location/stmt_len, the same ones pg_query_split_with_parser reports,
// so one parse serves both splitting and classification. The tree's size and depth are checked
// before anything walks it. Runs on a stack big enough for `sql` (see AnalyzerLimits).
FullAnalysis ParseAndAnalyzeOrThrow(const std::string& sql, const AnalyzerLimits& limits) {
  FullAnalysis analysis;
  std::vector<AnalyzedStatementPtr>& out = analysis.statements;
  PgQueryParseResult result = pg_query_parse(sql.c_str());
  std::vector<ParsedStatement> parsed;
  if (result.error != nullptr || result.parse_tree == nullptr) {
    out.push_back(Unparsed(sql, result.error != nullptr && result.error->message != nullptr
                                    ? result.error->message
                                    : "the statement could not be parsed"));
  } else if (std::string_view tree(result.parse_tree); JsonDepth(tree) > limits.max_tree_depth) {
    out.push_back(OverLimit(sql, AnalysisLimit::kTooComplex));
  } else if (tree.size() > limits.max_tree_bytes) {
    out.push_back(OverLimit(sql, AnalysisLimit::kTooLarge));
  } else {
    analysis.tree_bytes = tree.size();
    nlohmann::json root = nlohmann::json::parse(tree, nullptr, /*allow_exceptions=*/false);
    auto stmts = root.is_object() ? root.find("stmts") : root.end();
    if (!root.is_object() || stmts == root.end() || !stmts->is_array()) {
      out.push_back(Unparsed(sql, "the parse tree could not be read"));
    } else {
      for (auto& entry : *stmts) {
        if (!entry.is_object()) continue;
        size_t location = entry.value("stmt_location", size_t{0});
        size_t length = entry.value("stmt_len", size_t{0});
        if (location > sql.size()) location = sql.size();
        if (length == 0 || location + length > sql.size()) length = sql.size() - location;  // 0: to the end
        auto stmt = entry.find("stmt");
        parsed.push_back({std::string_view(sql).substr(location, length),
                          stmt == entry.end() ? nlohmann::json() : std::move(*stmt)});
      }
    }
  }
  pg_query_free_parse_result(result);
  analysis.details.resize(parsed.size());
  for (size_t i = 0; i < parsed.size(); ++i) out.push_back(Analyze(parsed[i], sql, analysis.details[i]));
  return analysis;
}

// Never throws (it may run on a thread of its own): a tree nlohmann cannot read is unparsed.
FullAnalysis ParseAndAnalyze(const std::string& sql, const AnalyzerLimits& limits) {
  try {
    return ParseAndAnalyzeOrThrow(sql, limits);
  } catch (const std::exception&) {
    FullAnalysis analysis;
    analysis.statements.push_back(Unparsed(sql, "the parse tree could not be read"));
    return analysis;
  }
}

FullAnalysis Only(AnalyzedStatementPtr statement) {
  FullAnalysis analysis;
  analysis.statements.push_back(std::move(statement));
  return analysis;
}

}  // namespace

std::string_view StatementClassName(StatementClass c) {
  for (const auto& [value, name] : kClassNames) {
    if (value == c) return name;
  }
  return "unknown";
}

std::optional<StatementClass> StatementClassFromName(std::string_view name) {
  if (name == "code") return StatementClass::kProcedure;
  for (const auto& [value, known] : kClassNames) {
    if (known == name) return value;
  }
  return std::nullopt;
}

SqlAnalyzer::SqlAnalyzer(size_t cache_entries, AnalyzerLimits limits)
    : limits_(limits),
      large_stack_(limits.large_stack_bytes),
      query_cache_(cache_entries),
      parse_cache_(cache_entries),
      shape_cache_(cache_entries) {}

FullAnalysis SqlAnalyzer::Analyze(std::string_view sql) const {
  if (Trim(sql).empty()) return {};
  if (sql.size() > limits_.max_statement_bytes) return Only(OverLimit(sql, AnalysisLimit::kTooLarge));
  // An embedded NUL cannot reach Postgres intact (the Query message is a C string): the text
  // after it would be invisible to the parser but not to us, so refuse to call it parsed.
  if (sql.find('\0') != std::string_view::npos) return Only(Unparsed(sql, "the statement contains a zero byte"));
  const std::string owned(sql);  // libpg_query needs a NUL-terminated string
  if (owned.size() <= limits_.inline_bytes) return ParseAndAnalyze(owned, limits_);
  FullAnalysis out;
  bool done = false;
  const bool ran = large_stack_.Run([&] {
    out = ParseAndAnalyze(owned, limits_);
    done = true;
  });
  if (!ran || !done) out = Only(OverLimit(sql, AnalysisLimit::kNoResources));
  return out;
}

std::vector<AnalyzedStatementPtr> SqlAnalyzer::AnalyzeQuery(std::string_view sql) {
  {
    absl::MutexLock lock(&mu_);
    if (auto* hit = query_cache_.Find(sql)) {
      ++stats_.exact_hits;
      return *hit;
    }
  }
  // Only texts the analyzer parses inline, under every size limit, are shaped: a reused analysis
  // then needs no large stack, and the shape key stays as small as the exact cache's keys.
  std::optional<StatementShape> shape;
  if (sql.size() <= std::min({limits_.inline_bytes, limits_.max_statement_bytes, kMaxCachedTextBytes})) {
    shape = ShapeOfText(sql);
  }
  if (shape.has_value()) {
    std::shared_ptr<const ShapeEntry> entry;
    {
      absl::MutexLock lock(&mu_);
      if (auto* hit = shape_cache_.Find(shape->key)) entry = *hit;
    }
    if (entry != nullptr) {
      if (auto reused = entry->Instantiate(sql, *shape, limits_.max_tree_bytes)) {
        absl::MutexLock lock(&mu_);
        ++stats_.shape_hits;
        return *std::move(reused);
      }
    }
  }
  // Parse outside the lock: libpg_query is thread-safe (per-thread memory contexts).
  FullAnalysis analysis = Analyze(sql);
  std::shared_ptr<const ShapeEntry> entry = shape.has_value() ? ShapeEntry::Build(sql, *shape, analysis) : nullptr;
  absl::MutexLock lock(&mu_);
  ++stats_.full_analyses;
  if (entry != nullptr) {
    // Its literal variants are served from the shape; keeping each of them by text as well would
    // only push other texts out of the exact cache.
    shape_cache_.Put(shape->key, std::move(entry));
  } else if (sql.size() <= kMaxCachedTextBytes) {
    query_cache_.Put(sql, analysis.statements);
  }
  return std::move(analysis.statements);
}

AnalyzerStats SqlAnalyzer::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

AnalyzedStatementPtr SqlAnalyzer::AnalyzeParse(std::string_view sql) {
  {
    absl::MutexLock lock(&mu_);
    if (auto* hit = parse_cache_.Find(sql)) return *hit;
  }
  std::vector<AnalyzedStatementPtr> parts = Analyze(sql).statements;
  AnalyzedStatementPtr result;
  if (parts.size() == 1) {
    result = parts.front();
  } else if (parts.empty()) {
    // An empty Parse is legal (pgjdbc validates connections with one); Execute then answers
    // EmptyQueryResponse and nothing runs, so it needs no more than a read grant.
    auto empty = std::make_shared<AnalyzedStatement>();
    empty->parsed = true;
    empty->statement_class = StatementClass::kRead;
    empty->required_classes = ClassBit(StatementClass::kRead);
    result = std::move(empty);
  } else {
    // Postgres refuses several commands in one prepared statement (42601); keep the worst flags.
    auto multi = std::make_shared<AnalyzedStatement>();
    multi->text = std::string(Trim(sql));
    multi->parsed = true;
    multi->statement_class = StatementClass::kUnknown;
    multi->required_classes = ClassBit(StatementClass::kUnknown);
    // No fingerprint: Postgres refuses the text, so it never ran. (Normalizing the whole text
    // again here would recurse on this thread's stack, which may be small.)
    for (const auto& p : parts) {
      if (!multi->normalized.empty()) multi->normalized += "; ";
      multi->normalized += p->normalized;
      multi->required_classes |= p->required_classes;
      multi->tampers_identity |= p->tampers_identity;
      multi->changes_read_only |= p->changes_read_only;
      multi->changes_lexing |= p->changes_lexing;
      multi->resets_session |= p->resets_session;
      if (multi->monitoring.empty()) multi->monitoring = p->monitoring;
    }
    result = std::move(multi);
  }
  if (sql.size() <= kMaxCachedTextBytes) {
    absl::MutexLock lock(&mu_);
    parse_cache_.Put(sql, result);
  }
  return result;
}

}  // namespace pgward::inspect
