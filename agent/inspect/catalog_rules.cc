// CatalogRules: name tables for functions, relations and settings (PostgreSQL 15 catalogs and the
// contrib modules a database commonly has: dblink, tablefunc, xml2, adminpack, pg_stat_statements,
// pg_walinspect).
#include "agent/inspect/catalog_rules.h"

#include <array>
#include <string>

#include "absl/strings/ascii.h"

namespace pgward::inspect {
namespace {

struct NameRule {
  std::string_view name;
  bool prefix;  // matches every name starting with `name`
  FunctionEffect effect;
};

// Docs: "System Administration Functions" (9.27), "Sequence Manipulation Functions" (9.17),
// "Large Objects" (35.4), "Advisory Lock Functions" (9.27.10), "Statistics Functions" (28.2.3).
constexpr auto kFunctionRules = std::to_array<NameRule>({
    // Shared state other sessions see.
    {"nextval", false, FunctionEffect::kWrite},
    {"setval", false, FunctionEffect::kWrite},
    {"pg_advisory_", true, FunctionEffect::kWrite},  // session locks: other principals wait on them
    {"pg_try_advisory_", true, FunctionEffect::kWrite},
    {"pg_notify", false, FunctionEffect::kWrite},
    {"lo_create", false, FunctionEffect::kWrite},
    {"lo_creat", false, FunctionEffect::kWrite},
    {"lo_unlink", false, FunctionEffect::kWrite},
    {"lo_from_bytea", false, FunctionEffect::kWrite},
    {"lo_put", false, FunctionEffect::kWrite},
    {"lowrite", false, FunctionEffect::kWrite},
    {"lo_truncate", false, FunctionEffect::kWrite},
    {"lo_truncate64", false, FunctionEffect::kWrite},
    // Signals to other backends and server administration.
    {"pg_cancel_backend", false, FunctionEffect::kMaintenance},
    {"pg_terminate_backend", false, FunctionEffect::kMaintenance},
    {"pg_reload_conf", false, FunctionEffect::kMaintenance},
    {"pg_rotate_logfile", false, FunctionEffect::kMaintenance},
    {"pg_log_backend_memory_contexts", false, FunctionEffect::kMaintenance},
    {"pg_promote", false, FunctionEffect::kMaintenance},
    {"pg_wal_replay_pause", false, FunctionEffect::kMaintenance},
    {"pg_wal_replay_resume", false, FunctionEffect::kMaintenance},
    {"pg_switch_wal", false, FunctionEffect::kMaintenance},
    {"pg_create_restore_point", false, FunctionEffect::kMaintenance},
    {"pg_backup_start", false, FunctionEffect::kMaintenance},
    {"pg_backup_stop", false, FunctionEffect::kMaintenance},
    {"pg_start_backup", false, FunctionEffect::kMaintenance},
    {"pg_stop_backup", false, FunctionEffect::kMaintenance},
    {"pg_stat_reset", true, FunctionEffect::kMaintenance},
    {"pg_stat_statements_reset", false, FunctionEffect::kMaintenance},
    {"pg_import_system_collations", false, FunctionEffect::kMaintenance},
    {"pg_replication_origin_", true, FunctionEffect::kMaintenance},
    {"pg_create_physical_replication_slot", false, FunctionEffect::kMaintenance},
    {"pg_create_logical_replication_slot", false, FunctionEffect::kMaintenance},
    {"pg_copy_physical_replication_slot", false, FunctionEffect::kMaintenance},
    {"pg_copy_logical_replication_slot", false, FunctionEffect::kMaintenance},
    {"pg_drop_replication_slot", false, FunctionEffect::kMaintenance},
    {"pg_replication_slot_advance", false, FunctionEffect::kMaintenance},
    {"pg_logical_emit_message", false, FunctionEffect::kMaintenance},
    // Server files and programs, other databases, SQL passed as text (invisible to the agent).
    {"pg_read_file", false, FunctionEffect::kCode},
    {"pg_read_binary_file", false, FunctionEffect::kCode},
    {"pg_stat_file", false, FunctionEffect::kCode},
    {"pg_ls_", true, FunctionEffect::kCode},  // pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    {"pg_current_logfile", false, FunctionEffect::kCode},
    {"pg_file_", true, FunctionEffect::kCode},  // adminpack: pg_file_write, pg_file_rename, ...
    {"pg_logdir_ls", false, FunctionEffect::kCode},
    {"lo_import", false, FunctionEffect::kCode},
    {"lo_export", false, FunctionEffect::kCode},
    {"dblink", true, FunctionEffect::kCode},
    {"query_to_xml", true, FunctionEffect::kCode},
    {"table_to_xml", true, FunctionEffect::kCode},  // reads any relation by name, pg_stat_activity too
    {"schema_to_xml", true, FunctionEffect::kCode},
    {"database_to_xml", true, FunctionEffect::kCode},
    {"ts_stat", false, FunctionEffect::kCode},
    {"crosstab", true, FunctionEffect::kCode},
    {"connectby", false, FunctionEffect::kCode},
    {"xpath_table", false, FunctionEffect::kCode},
    {"pg_logical_slot_", true, FunctionEffect::kCode},  // every session's changes, from the WAL
    {"pg_get_wal_", true, FunctionEffect::kCode},       // pg_walinspect
    // Other sessions' statements, locks and connections.
    {"pg_stat_get_activity", false, FunctionEffect::kMonitoring},
    {"pg_stat_get_backend_", true, FunctionEffect::kMonitoring},
    {"pg_stat_get_progress_info", false, FunctionEffect::kMonitoring},
    {"pg_stat_get_wal_senders", false, FunctionEffect::kMonitoring},
    {"pg_stat_get_wal_receiver", false, FunctionEffect::kMonitoring},
    {"pg_stat_get_subscription", false, FunctionEffect::kMonitoring},
    {"pg_lock_status", false, FunctionEffect::kMonitoring},
    {"pg_blocking_pids", false, FunctionEffect::kMonitoring},
    {"pg_safe_snapshot_blocking_pids", false, FunctionEffect::kMonitoring},
    {"pg_isolation_test_session_is_blocked", false, FunctionEffect::kMonitoring},
    {"pg_stat_statements", true, FunctionEffect::kMonitoring},  // pg_stat_statements(), _info()
    {"pg_get_replication_slots", false, FunctionEffect::kMonitoring},
    {"pg_prepared_xact", false, FunctionEffect::kMonitoring},
});

constexpr auto kMonitoringRelations = std::to_array<std::pair<std::string_view, bool>>({
    {"pg_stat_activity", false},
    {"pg_locks", false},
    {"pg_stat_statements", true},  // and pg_stat_statements_info
    {"pg_stat_ssl", false},
    {"pg_stat_gssapi", false},
    {"pg_stat_progress_", true},
    {"pg_stat_replication", false},
    {"pg_stat_wal_receiver", false},
    {"pg_stat_subscription", false},
    {"pg_replication_slots", false},
    {"pg_prepared_xacts", false},
});

bool NameMatches(std::string_view name, std::string_view rule, bool prefix) {
  return prefix ? StartsWithIgnoreCase(name, rule) : EqualsIgnoreCase(name, rule);
}

// Postgres compares encoding names after dropping everything but letters and digits
// (clean_encoding_name in src/common/encnames.c).
std::string CleanEncodingName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) != absl::ascii_tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

FunctionEffect EffectOfFunction(std::string_view name, size_t arg_count) {
  // ts_rewrite(query, select text) runs the SELECT it is given; ts_rewrite(query, target, substitute) does not.
  if (EqualsIgnoreCase(name, "ts_rewrite")) return arg_count == 2 ? FunctionEffect::kCode : FunctionEffect::kNone;
  for (const NameRule& rule : kFunctionRules) {
    if (NameMatches(name, rule.name, rule.prefix)) return rule.effect;
  }
  return FunctionEffect::kNone;
}

bool IsMonitoringRelation(std::string_view relname) {
  for (const auto& [name, prefix] : kMonitoringRelations) {
    if (NameMatches(relname, name, prefix)) return true;
  }
  return false;
}

bool IsIdentitySetting(std::string_view name) {
  return EqualsIgnoreCase(name, "application_name") || StartsWithIgnoreCase(name, "pgward.") ||
         EqualsIgnoreCase(name, "role") || EqualsIgnoreCase(name, "session_authorization");
}

bool IsReadOnlySetting(std::string_view name) {
  return EqualsIgnoreCase(name, "default_transaction_read_only") ||
         EqualsIgnoreCase(name, "transaction_read_only");
}

bool IsLexingSetting(std::string_view name) {
  return EqualsIgnoreCase(name, "standard_conforming_strings") ||
         EqualsIgnoreCase(name, "backslash_quote") || EqualsIgnoreCase(name, "client_encoding");
}

std::optional<bool> ParseBool(std::string_view word) {
  std::string w(word);
  absl::AsciiStrToLower(&w);
  if (w.empty()) return std::nullopt;
  auto prefix_of = [&](std::string_view full, size_t min_len) {
    return w.size() >= min_len && w.size() <= full.size() && full.substr(0, w.size()) == w;
  };
  if (w == "1" || prefix_of("true", 1) || prefix_of("yes", 1) || w == "on") return true;
  if (w == "0" || prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2)) return false;
  return std::nullopt;
}

bool IsSafeLexingValue(std::string_view setting, std::optional<std::string_view> value) {
  if (!value.has_value()) return false;
  if (EqualsIgnoreCase(setting, "standard_conforming_strings")) return ParseBool(*value) == true;
  if (EqualsIgnoreCase(setting, "backslash_quote")) {
    return EqualsIgnoreCase(*value, "safe_encoding") || ParseBool(*value) == false;
  }
  if (EqualsIgnoreCase(setting, "client_encoding")) {
    const std::string clean = CleanEncodingName(*value);
    return clean == "utf8" || clean == "unicode";
  }
  return false;
}

}  // namespace pgward::inspect
