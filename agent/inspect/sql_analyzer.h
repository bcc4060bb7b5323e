// SqlAnalyzer: splits, normalizes, fingerprints and classifies SQL with the real Postgres parser
// (libpg_query), and flags statements that would tamper with the session identity or read-only mode.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/inspect/lru_cache.h"

namespace pgward::inspect {

// What a statement does, as far as policy is concerned. Policy grants are expressed in these.
enum class StatementClass {
  kRead,
  kWrite,
  kDdl,
  kTransaction,
  kSession,
  kCopyIn,
  kCopyOut,
  kPrivilege,
  kMaintenance,
  kProcedure,
  kUnknown
};

// "read","write","ddl","transaction","session","copy_in","copy_out","privilege","maintenance",
// "procedure","unknown".
std::string_view StatementClassName(StatementClass c);
std::optional<StatementClass> StatementClassFromName(std::string_view name);

struct AnalyzedStatement {
  std::string text;         // this statement's own text (trimmed) as the caller sent it
  std::string normalized;   // pg_query_normalize: literals -> $n ("" if it did not parse)
  std::string fingerprint;  // pg_query_fingerprint hex ("" if it did not parse)
  StatementClass statement_class = StatementClass::kUnknown;
  bool parsed = false;
  // Tries to change application_name or any pgward.* setting: SET/SET LOCAL/RESET of those
  // names, set_config() on them (or on a name that is not a string constant: fail closed),
  // ALTER SYSTEM / ALTER ROLE|DATABASE ... SET of them.
  bool tampers_identity = false;
  // Could turn read-only off: SET default_transaction_read_only / transaction_read_only,
  // SET SESSION CHARACTERISTICS ... READ WRITE, BEGIN/START TRANSACTION READ WRITE,
  // SET TRANSACTION READ WRITE, set_config on those names (or a non-constant name).
  bool changes_read_only = false;
  // DEALLOCATE <name> removes this server-side prepared statement; lets the tracker forget it.
  std::string deallocate_name;
};
using AnalyzedStatementPtr = std::shared_ptr<const AnalyzedStatement>;

// Thread-safe. Results are cached by exact SQL text (LRU), because the hot path re-sends the
// same SQL; texts over kMaxCachedTextBytes are analyzed but not cached, so the cache stays
// bounded in bytes as well as entries.
class SqlAnalyzer {
 public:
  static constexpr size_t kMaxCachedTextBytes = 64 * 1024;

  explicit SqlAnalyzer(size_t cache_entries = 4096);

  // Splits a simple-protocol Query string into statements (pg_query_split_with_parser) and
  // analyzes each. An empty/whitespace/comment-only string gives an empty vector (Postgres
  // answers it with EmptyQueryResponse). If the string does not parse, returns ONE statement
  // with parsed=false, text = whole string (trimmed), class kUnknown.
  std::vector<AnalyzedStatementPtr> AnalyzeQuery(std::string_view sql);

  // Extended-protocol Parse: one statement; returns the analysis of the whole text. An empty
  // text is parsed=true, class kRead (Execute answers EmptyQueryResponse). If the
  // text holds several statements (Postgres refuses that with 42601), the result has
  // parsed=true, class kUnknown, and the tamper/read-only flags OR-ed over all of them.
  AnalyzedStatementPtr AnalyzeParse(std::string_view sql);

 private:
  absl::Mutex mu_;
  LruCache<std::vector<AnalyzedStatementPtr>> query_cache_ ABSL_GUARDED_BY(mu_);
  LruCache<AnalyzedStatementPtr> parse_cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::inspect
