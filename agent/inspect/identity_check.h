// IdentityCheck: the agent's own query that reads back the settings carrying a session's identity
// (pgward.principal, pgward.session_id, application_name) and those the server lexes SQL with
// (standard_conforming_strings, client_encoding), and the verdict on the answer. Sessions whose
// grant allows caller-supplied code run it after their round trips: code can change these
// settings where the agent cannot see it (set_config inside a DO block or a function).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace pgward::inspect {

class IdentityCheck {
 public:
  struct Expected {
    std::string principal;
    std::string session_id;
    std::string application_name;
  };
  enum class Verdict {
    kIntact,
    kIdentityChanged,  // pgward.principal, pgward.session_id or application_name moved
    kLexingChanged,    // standard_conforming_strings off, or a client encoding libpg_query misreads
    kUnknown,          // the query failed (e.g. 25P02 in an aborted transaction): check again later
  };
  // Bound on one value the check reads back; a longer one cannot be the expected value.
  static constexpr size_t kMaxValueBytes = 64 * 1024;

  explicit IdentityCheck(Expected expected) : expected_(std::move(expected)) {}

  // One simple Query of SHOW statements. SHOW takes no snapshot (pquery.c,
  // PlannedStmtRequiresSnapshot), so running it between the caller's round trips leaves
  // "SET TRANSACTION ... must be called before any query" and REPEATABLE READ snapshots as they
  // were; SHOW reads settings directly, so no function a caller created can answer for it.
  static std::string_view QueryText();

  // Responses to one run of the query, in order. Begin() starts a run.
  void Begin();
  // A DataRow's body (Int16 column count, then Int32 length + bytes per column).
  absl::Status OnDataRow(std::string_view body);
  // A DataRow longer than kMaxValueBytes: its value cannot be the expected one.
  void OnOversizedRow();
  void OnError();
  Verdict Finish() const;
  // The run so far saw an ErrorResponse.
  bool failed() const { return failed_; }

 private:
  Expected expected_;
  std::vector<std::string> values_;
  bool failed_ = false;
  bool oversized_ = false;
};

// Client encodings whose multibyte characters can contain the bytes of ASCII quotes and
// backslashes (Postgres's client-only encodings: SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030,
// JOHAB). libpg_query reads text as if it were UTF-8, so it splits such text differently.
bool IsClientOnlyEncoding(std::string_view name);

}  // namespace pgward::inspect
