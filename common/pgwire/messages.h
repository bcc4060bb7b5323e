// Decoders for the message bodies pgward inspects and builders for the messages it sends
// (PostgreSQL docs, "Message Formats"). Decoders take the body without the 5-byte header,
// return views into it, and refuse truncated or trailing bytes with InvalidArgument.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace pgward::pgwire {

struct ParseMessage {
  std::string_view statement;
  std::string_view query;
  uint16_t param_type_count = 0;
};
// Only the names are exposed; parameter formats, values and result formats are checked
// for bounds so a malformed Bind is refused before it reaches Postgres.
struct BindMessage {
  std::string_view portal;
  std::string_view statement;
};
struct ExecuteMessage {
  std::string_view portal;
  int32_t max_rows = 0;
};
struct DescribeOrClose {
  char kind = 'S';  // 'S' prepared statement or 'P' portal
  std::string_view name;
};
// severity comes from the non-localized 'V' field when present, else from 'S'.
struct ErrorFields {
  std::string_view severity, sqlstate, message, detail, hint;
};
// Authentication request codes (the Int32 after 'R').
inline constexpr int32_t kAuthOk = 0;
inline constexpr int32_t kAuthKerberosV5 = 2;
inline constexpr int32_t kAuthCleartextPassword = 3;
inline constexpr int32_t kAuthMd5Password = 5;
inline constexpr int32_t kAuthGss = 7;
inline constexpr int32_t kAuthGssContinue = 8;
inline constexpr int32_t kAuthSspi = 9;
inline constexpr int32_t kAuthSasl = 10;
inline constexpr int32_t kAuthSaslContinue = 11;
inline constexpr int32_t kAuthSaslFinal = 12;
// data: md5 -> 4-byte salt; SASL -> mechanism list (see SplitSaslMechanisms);
// SASLContinue/SASLFinal/GSSContinue -> the mechanism's bytes; otherwise empty.
struct Authentication {
  int32_t code = 0;
  std::string_view data;
};

// Frontend.
absl::StatusOr<std::string_view> DecodeQuery(std::string_view body);
absl::StatusOr<ParseMessage> DecodeParse(std::string_view body);
absl::StatusOr<BindMessage> DecodeBind(std::string_view body);
absl::StatusOr<ExecuteMessage> DecodeExecute(std::string_view body);
absl::StatusOr<DescribeOrClose> DecodeDescribeOrClose(std::string_view body);
absl::StatusOr<std::string_view> DecodePasswordMessage(std::string_view body);

// Backend.
absl::StatusOr<std::string_view> DecodeCommandComplete(std::string_view body);
absl::StatusOr<ErrorFields> DecodeErrorOrNotice(std::string_view body);
absl::StatusOr<char> DecodeReadyForQuery(std::string_view body);  // 'I', 'T' or 'E' only
absl::StatusOr<std::pair<std::string_view, std::string_view>> DecodeParameterStatus(
    std::string_view body);
absl::StatusOr<std::pair<int32_t, uint32_t>> DecodeBackendKeyData(std::string_view body);
absl::StatusOr<Authentication> DecodeAuthentication(std::string_view body);

// Splits an AuthenticationSASL mechanism list (NUL-terminated names, then an empty name).
std::vector<std::string_view> SplitSaslMechanisms(std::string_view data);
// Rows reported by a CommandComplete tag: "SELECT 5" -> 5, "INSERT 0 3" -> 3, and the
// last number of UPDATE/DELETE/MERGE/COPY/MOVE/FETCH n; -1 for any other tag.
int64_t RowsFromCommandTag(std::string_view tag);

// Builders append one whole message to `out` (callers reuse one buffer; no other
// allocation). Strings are cut at an embedded NUL, which the wire format cannot carry.
void AppendErrorResponse(std::string& out, std::string_view severity /*"ERROR"/"FATAL"*/,
                         std::string_view sqlstate, std::string_view message,
                         std::string_view detail = {}, std::string_view hint = {});
void AppendNoticeResponse(std::string& out, std::string_view severity /*"NOTICE"/"WARNING"*/,
                          std::string_view sqlstate, std::string_view message,
                          std::string_view detail = {}, std::string_view hint = {});
void AppendAuthenticationOk(std::string& out);
void AppendAuthenticationCleartextPassword(std::string& out);
void AppendParameterStatus(std::string& out, std::string_view name, std::string_view value);
void AppendBackendKeyData(std::string& out, int32_t pid, uint32_t key);
void AppendReadyForQuery(std::string& out, char status);
void AppendStartupMessage(std::string& out,
                          const std::vector<std::pair<std::string, std::string>>& params);
void AppendSslRequest(std::string& out);
void AppendCancelRequest(std::string& out, int32_t pid, uint32_t key);
void AppendPasswordMessage(std::string& out, std::string_view password);
void AppendSaslInitialResponse(std::string& out, std::string_view mechanism,
                               std::string_view data);
void AppendSaslResponse(std::string& out, std::string_view data);
void AppendQuery(std::string& out, std::string_view sql);
void AppendSync(std::string& out);
void AppendTerminate(std::string& out);

}  // namespace pgward::pgwire
