// SqlAnalyzer: splits, normalizes, fingerprints and classifies SQL with the real Postgres parser
// (libpg_query), and flags statements that would tamper with the session identity, read-only mode
// or the settings the server lexes SQL with. Bounded: text size, parse tree size and depth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "agent/inspect/lru_cache.h"
#include "agent/inspect/run_with_stack.h"

namespace pgward::inspect {

class ShapeEntry;
struct FullAnalysis;

// What a statement does, as far as policy is concerned. Policy grants are expressed in these.
// kProcedure is caller-supplied code (DO, CALL, functions, triggers, rules, ...; see
// statement_classifier.cc): its effect cannot be read from the statement text.
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

// A set of classes, one bit per StatementClass.
using ClassSet = uint32_t;
constexpr ClassSet ClassBit(StatementClass c) { return ClassSet{1} << static_cast<unsigned>(c); }

// "read","write","ddl","transaction","session","copy_in","copy_out","privilege","maintenance",
// "procedure","unknown". StatementClassFromName also accepts "code" for "procedure".
std::string_view StatementClassName(StatementClass c);
std::optional<StatementClass> StatementClassFromName(std::string_view name);

// Why a text was not analyzed. Policy refuses these in every mode.
enum class AnalysisLimit {
  kNone,
  kTooLarge,      // text over max_statement_bytes, or its parse tree over max_tree_bytes (ERROR 54000)
  kTooComplex,    // parse tree nested deeper than max_tree_depth (ERROR 54001)
  kNoResources,   // the thread for a large statement could not start (ERROR 53000)
};

struct AnalyzedStatement {
  std::string text;         // this statement's own text (trimmed); the first 256 bytes when over a limit
  std::string normalized;   // literals -> $n ("" if it did not parse)
  std::string fingerprint;  // pg_query_fingerprint hex ("" if it did not parse)
  StatementClass statement_class = StatementClass::kUnknown;
  // Every class the statement needs: its own plus what its parts do, e.g. a SELECT calling
  // nextval() needs read and write; one defining a trigger in CREATE SCHEMA needs procedure.
  ClassSet required_classes = ClassBit(StatementClass::kUnknown);
  std::string class_note;   // why required_classes holds more than statement_class ("it calls nextval()")
  bool parsed = false;
  std::string parse_error;  // libpg_query's message when parsed is false and no limit was hit
  AnalysisLimit limit = AnalysisLimit::kNone;
  // Tries to change who Postgres thinks the session is: application_name, pgward.*, role,
  // session_authorization, through SET/SET LOCAL/RESET, set_config() (or set_config on a name
  // that is not a constant: fail closed), ALTER SYSTEM/ROLE/DATABASE ... SET, a function's SET
  // clause, or UPDATE pg_settings.
  bool tampers_identity = false;
  // Could turn read-only off: SET default_transaction_read_only / transaction_read_only,
  // SET SESSION CHARACTERISTICS ... READ WRITE, BEGIN/START TRANSACTION READ WRITE,
  // SET TRANSACTION READ WRITE, set_config on those names (or a non-constant name).
  bool changes_read_only = false;
  // Changes standard_conforming_strings, backslash_quote or client_encoding away from the values
  // pgward pins, by the same routes as tampers_identity: the server would then lex SQL
  // differently from libpg_query.
  bool changes_lexing = false;
  // A view or function showing other sessions' statements, locks or connections
  // ("pg_stat_activity", "pg_lock_status()"); empty if none.
  std::string monitoring;
  // SET [SESSION] application_name = <constant>, alone: the shape drivers send after login.
  bool plain_application_name_set = false;
  // DEALLOCATE <name> removes this server-side prepared statement; lets the tracker forget it.
  std::string deallocate_name;
  // RESET ALL or DISCARD ALL: every setting back to its session default (the start-up value).
  bool resets_session = false;
};
using AnalyzedStatementPtr = std::shared_ptr<const AnalyzedStatement>;

struct AnalyzerLimits {
  size_t max_statement_bytes = size_t{1} << 20;  // a Query string or Parse text
  // libpg_query's JSON parse tree of one text. The tree costs about ten times this in memory
  // while it is read; typical text expands 10-20 times (a 1 MiB multi-row INSERT: 13 MB).
  size_t max_tree_bytes = size_t{16} << 20;
  // Nesting of the JSON tree, about two levels per nested expression. Postgres itself refuses
  // ~5,000 nested operators with its default max_stack_depth (2 MB).
  size_t max_tree_depth = 20000;
  // libpg_query recurses once per nesting level (up to ~450 bytes of stack each): texts longer
  // than this are analyzed on a thread with a stack of large_stack_bytes.
  size_t inline_bytes = 4096;
  size_t large_stack_bytes = size_t{256} << 20;
};

// How AnalyzeQuery answered, since the analyzer was made.
struct AnalyzerStats {
  uint64_t exact_hits = 0;     // the same text was analyzed before
  uint64_t shape_hits = 0;     // a text differing only in constants was (statement_shape.h)
  uint64_t full_analyses = 0;  // parsed, normalized, fingerprinted and classified afresh
};

// Thread-safe. Results are cached by exact SQL text (LRU), because the hot path re-sends the
// same SQL; texts over kMaxCachedTextBytes are analyzed but not cached, so the cache stays
// bounded in bytes as well as entries. Simple-protocol texts that differ only in their constants
// (drivers and pgbench -M simple inline every value) share one analysis per shape (LRU) when no
// part of it can depend on those constants; see statement_shape.cc.
class SqlAnalyzer {
 public:
  static constexpr size_t kMaxCachedTextBytes = 64 * 1024;

  explicit SqlAnalyzer(size_t cache_entries = 4096, AnalyzerLimits limits = {});

  // Splits a simple-protocol Query string into statements and analyzes each. An
  // empty/whitespace/comment-only string gives an empty vector (Postgres answers it with
  // EmptyQueryResponse). If the string does not parse or is over a limit, returns ONE statement
  // with parsed=false (and parse_error or limit set), text = whole string (trimmed), class kUnknown.
  std::vector<AnalyzedStatementPtr> AnalyzeQuery(std::string_view sql);

  // Extended-protocol Parse: one statement; returns the analysis of the whole text. An empty
  // text is parsed=true, class kRead (Execute answers EmptyQueryResponse). If the
  // text holds several statements (Postgres refuses that with 42601), the result has
  // parsed=true, class kUnknown, and the flags and required classes OR-ed over all of them.
  AnalyzedStatementPtr AnalyzeParse(std::string_view sql);

  const AnalyzerLimits& limits() const { return limits_; }
  AnalyzerStats stats() const;

 private:
  FullAnalysis Analyze(std::string_view sql) const;

  const AnalyzerLimits limits_;
  // Analyzes texts over limits_.inline_bytes; mutable: Analyze() is logically const.
  mutable LargeStackWorker large_stack_;
  mutable absl::Mutex mu_;
  LruCache<std::vector<AnalyzedStatementPtr>> query_cache_ ABSL_GUARDED_BY(mu_);
  LruCache<AnalyzedStatementPtr> parse_cache_ ABSL_GUARDED_BY(mu_);
  LruCache<std::shared_ptr<const ShapeEntry>> shape_cache_ ABSL_GUARDED_BY(mu_);  // by StatementShape::key
  AnalyzerStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::inspect
