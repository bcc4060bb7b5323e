// Builders for the messages pgward itself sends, in both directions (gateway to caller,
// agent to upstream Postgres). Each appends one whole message to a caller-owned buffer.
#include <cstring>

#include "common/pgwire/messages.h"
#include "common/pgwire/protocol.h"
#include "common/pgwire/wire_writer.h"

namespace pgward::pgwire {
namespace {

void AppendErrorOrNotice(std::string& out, char type, std::string_view severity,
                         std::string_view sqlstate, std::string_view message,
                         std::string_view detail, std::string_view hint) {
  size_t at = BeginMessage(out, type);
  // 'S' is the localized severity and 'V' the non-localized one (since 9.6); we send both
  // with the same English value so every client finds the field it looks for.
  out.push_back('S');
  AppendCString(out, severity);
  out.push_back('V');
  AppendCString(out, severity);
  out.push_back('C');
  AppendCString(out, sqlstate);
  out.push_back('M');
  AppendCString(out, message);
  if (!detail.empty()) {
    out.push_back('D');
    AppendCString(out, detail);
  }
  if (!hint.empty()) {
    out.push_back('H');
    AppendCString(out, hint);
  }
  out.push_back('\0');
  FinishMessage(out, at);
}

void AppendAuthentication(std::string& out, int32_t code) {
  size_t at = BeginMessage(out, static_cast<char>(BackendType::kAuthentication));
  AppendInt32(out, code);
  FinishMessage(out, at);
}

void AppendEmptyMessage(std::string& out, char type) {
  size_t at = BeginMessage(out, type);
  FinishMessage(out, at);
}

}  // namespace

void AppendErrorResponse(std::string& out, std::string_view severity, std::string_view sqlstate,
                         std::string_view message, std::string_view detail,
                         std::string_view hint) {
  AppendErrorOrNotice(out, static_cast<char>(BackendType::kErrorResponse), severity, sqlstate,
                      message, detail, hint);
}

void AppendNoticeResponse(std::string& out, std::string_view severity, std::string_view sqlstate,
                          std::string_view message, std::string_view detail,
                          std::string_view hint) {
  AppendErrorOrNotice(out, static_cast<char>(BackendType::kNoticeResponse), severity, sqlstate,
                      message, detail, hint);
}

void AppendAuthenticationOk(std::string& out) { AppendAuthentication(out, kAuthOk); }

void AppendAuthenticationCleartextPassword(std::string& out) {
  AppendAuthentication(out, kAuthCleartextPassword);
}

void AppendParameterStatus(std::string& out, std::string_view name, std::string_view value) {
  size_t at = BeginMessage(out, static_cast<char>(BackendType::kParameterStatus));
  AppendCString(out, name);
  AppendCString(out, value);
  FinishMessage(out, at);
}

void AppendBackendKeyData(std::string& out, int32_t pid, uint32_t key) {
  size_t at = BeginMessage(out, static_cast<char>(BackendType::kBackendKeyData));
  AppendInt32(out, pid);
  AppendUint32(out, key);
  FinishMessage(out, at);
}

void AppendReadyForQuery(std::string& out, char status) {
  size_t at = BeginMessage(out, static_cast<char>(BackendType::kReadyForQuery));
  out.push_back(status);
  FinishMessage(out, at);
}

void AppendStartupMessage(std::string& out,
                          const std::vector<std::pair<std::string, std::string>>& params) {
  size_t at = BeginUntypedPacket(out);
  AppendUint32(out, kProtocolVersion3);
  for (const auto& [name, value] : params) {
    AppendCString(out, name);
    AppendCString(out, value);
  }
  out.push_back('\0');
  FinishMessage(out, at);
}

void AppendSslRequest(std::string& out) {
  size_t at = BeginUntypedPacket(out);
  AppendUint32(out, kSslRequestCode);
  FinishMessage(out, at);
}

void AppendCancelRequest(std::string& out, int32_t pid, uint32_t key) {
  size_t at = BeginUntypedPacket(out);
  AppendUint32(out, kCancelRequestCode);
  AppendInt32(out, pid);
  AppendUint32(out, key);
  FinishMessage(out, at);
}

void AppendPasswordMessage(std::string& out, std::string_view password) {
  size_t at = BeginMessage(out, static_cast<char>(FrontendType::kPassword));
  AppendCString(out, password);
  FinishMessage(out, at);
}

void AppendSaslInitialResponse(std::string& out, std::string_view mechanism,
                               std::string_view data) {
  size_t at = BeginMessage(out, static_cast<char>(FrontendType::kPassword));
  AppendCString(out, mechanism);
  // The client-first-message is raw bytes with an explicit length (RFC 5802 data has no
  // NUL, but the format does not rely on that).
  AppendInt32(out, static_cast<int32_t>(data.size()));
  out.append(data);
  FinishMessage(out, at);
}

void AppendSaslResponse(std::string& out, std::string_view data) {
  size_t at = BeginMessage(out, static_cast<char>(FrontendType::kPassword));
  out.append(data);
  FinishMessage(out, at);
}

void AppendQuery(std::string& out, std::string_view sql) {
  size_t at = BeginMessage(out, static_cast<char>(FrontendType::kQuery));
  AppendCString(out, sql);
  FinishMessage(out, at);
}

void AppendSync(std::string& out) { AppendEmptyMessage(out, static_cast<char>(FrontendType::kSync)); }

void AppendTerminate(std::string& out) {
  AppendEmptyMessage(out, static_cast<char>(FrontendType::kTerminate));
}

}  // namespace pgward::pgwire
