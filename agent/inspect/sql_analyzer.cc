// SqlAnalyzer: libpg_query parse, normalize and fingerprint, with an LRU cache by exact text.
#include "agent/inspect/sql_analyzer.h"

#include <array>
#include <utility>

#include <pg_query.h>  // defines PG_VERSION: keep it out of headers

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "agent/inspect/statement_classifier.h"

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

// absl::string_view is not std::string_view in this Abseil build, so trim locally.
std::string_view Trim(std::string_view s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// One statement of a parsed string: its text slice and its parse tree.
struct ParsedStatement {
  std::string_view text;
  nlohmann::json tree;
};

// Parses with the real Postgres grammar. Statement boundaries come from the parse tree's
// stmt_location/stmt_len, the same ones pg_query_split_with_parser reports, so one parse
// serves both splitting and classification. nullopt if the string does not parse.
std::optional<std::vector<ParsedStatement>> Parse(const std::string& sql) {
  PgQueryParseResult result = pg_query_parse(sql.c_str());
  std::optional<std::vector<ParsedStatement>> out;
  if (result.error == nullptr && result.parse_tree != nullptr) {
    nlohmann::json tree = nlohmann::json::parse(result.parse_tree, nullptr, /*allow_exceptions=*/false);
    auto stmts = tree.is_object() ? tree.find("stmts") : tree.end();
    if (tree.is_object() && stmts != tree.end() && stmts->is_array()) {
      out.emplace();
      for (auto& entry : *stmts) {
        if (!entry.is_object()) continue;
        size_t location = entry.value("stmt_location", size_t{0});
        size_t length = entry.value("stmt_len", size_t{0});
        if (location > sql.size()) location = sql.size();
        if (length == 0 || location + length > sql.size()) length = sql.size() - location;  // 0: to the end
        auto stmt = entry.find("stmt");
        out->push_back({std::string_view(sql).substr(location, length),
                        stmt == entry.end() ? nlohmann::json() : std::move(*stmt)});
      }
    }
  }
  pg_query_free_parse_result(result);
  return out;
}

std::string Normalize(const std::string& text) {
  PgQueryNormalizeResult result = pg_query_normalize(text.c_str());
  std::string out = result.error == nullptr && result.normalized_query != nullptr ? result.normalized_query : "";
  pg_query_free_normalize_result(result);
  return out;
}

std::string Fingerprint(const std::string& text) {
  PgQueryFingerprintResult result = pg_query_fingerprint(text.c_str());
  std::string out = result.error == nullptr && result.fingerprint_str != nullptr ? result.fingerprint_str : "";
  pg_query_free_fingerprint_result(result);
  return out;
}

AnalyzedStatementPtr Unparsed(std::string_view sql) {
  auto s = std::make_shared<AnalyzedStatement>();
  s->text = std::string(Trim(sql));
  return s;
}

AnalyzedStatementPtr Analyze(const ParsedStatement& parsed) {
  auto s = std::make_shared<AnalyzedStatement>();
  s->text = std::string(Trim(parsed.text));
  s->parsed = true;
  s->normalized = Normalize(s->text);
  s->fingerprint = Fingerprint(s->text);
  Classification c = ClassifyStatement(parsed.tree);
  s->statement_class = c.statement_class;
  s->tampers_identity = c.tampers_identity;
  s->changes_read_only = c.changes_read_only;
  s->deallocate_name = std::move(c.deallocate_name);
  return s;
}

std::vector<AnalyzedStatementPtr> AnalyzeUncached(std::string_view sql) {
  std::vector<AnalyzedStatementPtr> out;
  if (Trim(sql).empty()) return out;
  std::string owned(sql);  // libpg_query needs a NUL-terminated string
  // An embedded NUL cannot reach Postgres intact (the Query message is a C string): the text
  // after it would be invisible to the parser but not to us, so refuse to call it parsed.
  if (owned.find('\0') != std::string::npos) {
    out.push_back(Unparsed(sql));
    return out;
  }
  auto parsed = Parse(owned);
  if (!parsed.has_value()) {
    out.push_back(Unparsed(sql));
    return out;
  }
  for (const auto& p : *parsed) out.push_back(Analyze(p));
  return out;
}

}  // namespace

std::string_view StatementClassName(StatementClass c) {
  for (const auto& [value, name] : kClassNames) {
    if (value == c) return name;
  }
  return "unknown";
}

std::optional<StatementClass> StatementClassFromName(std::string_view name) {
  for (const auto& [value, known] : kClassNames) {
    if (known == name) return value;
  }
  return std::nullopt;
}

SqlAnalyzer::SqlAnalyzer(size_t cache_entries) : query_cache_(cache_entries), parse_cache_(cache_entries) {}

std::vector<AnalyzedStatementPtr> SqlAnalyzer::AnalyzeQuery(std::string_view sql) {
  {
    absl::MutexLock lock(&mu_);
    if (auto* hit = query_cache_.Find(sql)) return *hit;
  }
  // Parse outside the lock: libpg_query is thread-safe (per-thread memory contexts).
  std::vector<AnalyzedStatementPtr> result = AnalyzeUncached(sql);
  if (sql.size() <= kMaxCachedTextBytes) {
    absl::MutexLock lock(&mu_);
    query_cache_.Put(sql, result);
  }
  return result;
}

AnalyzedStatementPtr SqlAnalyzer::AnalyzeParse(std::string_view sql) {
  {
    absl::MutexLock lock(&mu_);
    if (auto* hit = parse_cache_.Find(sql)) return *hit;
  }
  std::vector<AnalyzedStatementPtr> parts = AnalyzeUncached(sql);
  AnalyzedStatementPtr result;
  if (parts.size() == 1) {
    result = parts.front();
  } else if (parts.empty()) {
    // An empty Parse is legal (pgjdbc validates connections with one); Execute then answers
    // EmptyQueryResponse and nothing runs, so it needs no more than a read grant.
    auto empty = std::make_shared<AnalyzedStatement>();
    empty->parsed = true;
    empty->statement_class = StatementClass::kRead;
    result = std::move(empty);
  } else {
    // Postgres refuses several commands in one prepared statement (42601); keep the worst flags.
    auto multi = std::make_shared<AnalyzedStatement>();
    multi->text = std::string(Trim(sql));
    multi->parsed = true;
    multi->normalized = Normalize(multi->text);
    multi->fingerprint = Fingerprint(multi->text);
    for (const auto& p : parts) {
      multi->tampers_identity |= p->tampers_identity;
      multi->changes_read_only |= p->changes_read_only;
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
