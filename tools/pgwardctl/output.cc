// pgwardctl output formatting: see output.h.
#include "tools/pgwardctl/output.h"

#include <algorithm>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace pgward::ctl {
namespace {

// null for unset times so scripts can tell "never" from a date.
nlohmann::ordered_json TimeOrNull(int64_t unix_ms) {
  if (unix_ms == 0) return nullptr;
  return FormatTimeMs(unix_ms);
}

}  // namespace

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size(), 0);
  const auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);
  const auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  };
  print(headers_);
  for (const auto& row : rows_) print(row);
}

std::string FormatTimeUs(int64_t unix_us) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(unix_us), absl::UTCTimeZone());
}

std::string FormatTimeMs(int64_t unix_ms) { return unix_ms == 0 ? "" : FormatTimeUs(unix_ms * 1000); }

void PrintJson(std::ostream& out, const nlohmann::ordered_json& value) {
  out << value.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
}

std::string ModeName(pgward::v1::Mode mode) {
  switch (mode) {
    case pgward::v1::MODE_READ_ONLY: return "read-only";
    case pgward::v1::MODE_READ_WRITE: return "read-write";
    case pgward::v1::MODE_STATEMENT_CLASSES: return "classes";
    default: return "unspecified";
  }
}

nlohmann::ordered_json AgentJson(const pgward::v1::Agent& a) {
  nlohmann::ordered_json j;
  j["name"] = a.name();
  j["online"] = a.online();
  j["active_sessions"] = a.active_sessions();
  j["created"] = TimeOrNull(a.created_unix_ms());
  j["last_seen"] = TimeOrNull(a.last_seen_unix_ms());
  j["version"] = a.version();
  j["peer"] = a.peer();
  // From the agent's last heartbeat; null while it is offline.
  if (a.online()) {
    j["spool"] = {{"bytes", a.spool_bytes()}, {"max_bytes", a.spool_max_bytes()}, {"full", a.spool_full()}};
  } else {
    j["spool"] = nullptr;
  }
  return j;
}

nlohmann::ordered_json ConnectionJson(const pgward::v1::Connection& c) {
  nlohmann::ordered_json j;
  j["name"] = c.name();
  j["agent"] = c.agent();
  j["host"] = c.host();
  j["port"] = c.port();
  j["database"] = c.database();
  j["user"] = c.user();
  j["password_ref"] = c.password_ref();
  j["sslmode"] = c.sslmode();
  j["ca_file"] = c.ca_file();
  j["created"] = FormatTimeMs(c.created_unix_ms());
  return j;
}

nlohmann::ordered_json GrantJson(const pgward::v1::Grant& g) {
  nlohmann::ordered_json j;
  j["id"] = g.id();
  j["principal"] = g.principal();
  j["group"] = g.group();
  j["issuer"] = g.issuer();
  j["connection"] = g.connection();
  j["mode"] = ModeName(g.policy().mode());
  j["classes"] = std::vector<std::string>(g.policy().statement_classes().begin(), g.policy().statement_classes().end());
  j["expires"] = g.expires_unix_ms() == 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(FormatTimeMs(g.expires_unix_ms()));
  const uint32_t max_sessions = g.policy().limits().max_sessions();  // 0: the gateway's default
  j["max_sessions"] = max_sessions == 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(max_sessions);
  j["allow_monitoring"] = g.policy().allow_monitoring();
  j["created"] = FormatTimeMs(g.created_unix_ms());
  j["created_by"] = g.created_by();
  return j;
}

nlohmann::ordered_json RevocationJson(const pgward::v1::Revocation& r) {
  nlohmann::ordered_json j;
  j["principal"] = r.principal();
  j["group"] = r.group();
  j["issuer"] = r.issuer();
  j["reason"] = r.reason();
  j["revoked_by"] = r.revoked_by();
  j["revoked"] = FormatTimeMs(r.revoked_unix_ms());
  return j;
}

nlohmann::ordered_json SessionJson(const pgward::v1::SessionRecord& s) {
  nlohmann::ordered_json j;
  j["session_id"] = s.session_id();
  j["principal"] = s.principal();
  j["issuer"] = s.issuer();
  j["connection"] = s.connection();
  j["agent"] = s.agent();
  j["client_addr"] = s.client_addr();
  j["application_name"] = s.application_name();
  j["started"] = FormatTimeMs(s.started_unix_ms());
  j["ended"] = s.ended_unix_ms() == 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(FormatTimeMs(s.ended_unix_ms()));
  j["end_reason"] = s.end_reason();
  j["statements"] = s.statements();
  return j;
}

nlohmann::ordered_json AuditJson(const pgward::v1::AuditRow& r) {
  nlohmann::ordered_json j;
  j["id"] = r.id();
  j["time"] = FormatTimeUs(r.time_unix_us());
  j["session_id"] = r.session_id();
  j["principal"] = r.principal();
  j["issuer"] = r.issuer();
  j["connection"] = r.connection();
  j["agent"] = r.agent();
  j["client_addr"] = r.client_addr();
  j["protocol"] = r.protocol();
  j["statement"] = r.statement();
  j["fingerprint"] = r.fingerprint();
  j["command_tag"] = r.command_tag();
  j["rows"] = r.rows();
  j["sqlstate"] = r.sqlstate();
  j["error"] = r.error();
  j["duration_us"] = r.duration_us();
  j["decision"] = r.decision();
  j["rule"] = r.rule();
  j["reviewer"] = r.reviewer();
  j["outcome"] = r.outcome();
  return j;
}

}  // namespace pgward::ctl
