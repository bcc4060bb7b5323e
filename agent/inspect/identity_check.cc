// IdentityCheck: the SHOW query, DataRow decoding and the comparison with what pgward set at login.
#include "agent/inspect/identity_check.h"

#include <array>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "agent/inspect/catalog_rules.h"

namespace pgward::inspect {
namespace {

constexpr std::string_view kQuery =
    "SHOW pgward.principal; SHOW pgward.session_id; SHOW application_name; "
    "SHOW standard_conforming_strings; SHOW client_encoding";
constexpr size_t kColumns = 5;

uint32_t ReadUint32(std::string_view b) {
  return (uint32_t(uint8_t(b[0])) << 24) | (uint32_t(uint8_t(b[1])) << 16) | (uint32_t(uint8_t(b[2])) << 8) |
         uint32_t(uint8_t(b[3]));
}

}  // namespace

bool IsClientOnlyEncoding(std::string_view name) {
  // Canonical names as SHOW client_encoding reports them (src/common/encnames.c pg_enc2name_tbl).
  constexpr std::array<std::string_view, 7> kClientOnly = {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK",
                                                           "UHC",  "GB18030",        "JOHAB"};
  for (std::string_view e : kClientOnly) {
    if (EqualsIgnoreCase(name, e)) return true;
  }
  return false;
}

std::string_view IdentityCheck::QueryText() { return kQuery; }

void IdentityCheck::Begin() {
  values_.clear();
  failed_ = false;
  oversized_ = false;
}

void IdentityCheck::OnOversizedRow() { oversized_ = true; }

absl::Status IdentityCheck::OnDataRow(std::string_view body) {
  // 55.7 DataRow: Int16 column count, then per column Int32 length (-1: NULL) and the bytes.
  if (body.size() < 2) return absl::InvalidArgumentError("DataRow too short");
  const int columns = (int(uint8_t(body[0])) << 8) | int(uint8_t(body[1]));
  body.remove_prefix(2);
  if (columns != 1) return absl::InvalidArgumentError("SHOW answered with more than one column");
  if (body.size() < 4) return absl::InvalidArgumentError("DataRow too short");
  const uint32_t length = ReadUint32(body);
  body.remove_prefix(4);
  if (length == 0xffffffffu) {
    failed_ = true;  // NULL: not a value SHOW gives
    return absl::OkStatus();
  }
  if (length != body.size()) return absl::InvalidArgumentError("DataRow length mismatch");
  if (values_.size() < kColumns) values_.emplace_back(body);
  return absl::OkStatus();
}

void IdentityCheck::OnError() { failed_ = true; }

IdentityCheck::Verdict IdentityCheck::Finish() const {
  if (oversized_) return Verdict::kIdentityChanged;
  if (failed_ || values_.size() != kColumns) return Verdict::kUnknown;
  if (values_[0] != expected_.principal || values_[1] != expected_.session_id ||
      values_[2] != expected_.application_name) {
    return Verdict::kIdentityChanged;
  }
  if (!EqualsIgnoreCase(values_[3], "on") || IsClientOnlyEncoding(values_[4])) return Verdict::kLexingChanged;
  return Verdict::kIntact;
}

}  // namespace pgward::inspect
