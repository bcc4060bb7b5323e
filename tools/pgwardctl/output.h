// pgwardctl output: aligned tables for people, JSON for scripts (contract sections 5 and 8).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pgward/v1/admin.pb.h"
#include "pgward/v1/types.pb.h"

namespace pgward::ctl {

// Columns padded to the widest cell, separated by two spaces; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// RFC 3339 in UTC with microseconds: 2026-01-31T18:00:00.123456Z.
std::string FormatTimeUs(int64_t unix_us);
// As above from milliseconds; "" for 0 (never/unset).
std::string FormatTimeMs(int64_t unix_ms);
// Keys keep the order written (contract order for audit rows). Writes JSON, replacing invalid UTF-8 (statements are whatever the caller sent) instead of
// throwing.
void PrintJson(std::ostream& out, const nlohmann::ordered_json& value);

std::string ModeName(pgward::v1::Mode mode);  // read-only | read-write | classes

nlohmann::ordered_json AgentJson(const pgward::v1::Agent& a);
nlohmann::ordered_json ConnectionJson(const pgward::v1::Connection& c);
nlohmann::ordered_json GrantJson(const pgward::v1::Grant& g);
nlohmann::ordered_json RevocationJson(const pgward::v1::Revocation& r);
nlohmann::ordered_json SessionJson(const pgward::v1::SessionRecord& s);
// Exactly the contract audit fields (ARCHITECTURE.md section 5), in contract order.
nlohmann::ordered_json AuditJson(const pgward::v1::AuditRow& r);

}  // namespace pgward::ctl
