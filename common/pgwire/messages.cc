// Body decoders for the messages pgward inspects. Each refuses truncation and trailing
// bytes: a body that does not parse exactly is a protocol violation, never "close enough".
#include "common/pgwire/messages.h"

#include <charconv>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/pgwire/wire_reader.h"

namespace pgward::pgwire {
namespace {

// Debian's Abseil is built with its own string_view type, which StrCat cannot take from a
// std::string_view directly.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Malformed(std::string_view message_name, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", AbslView(message_name), ": ", AbslView(what)));
}

// Most bodies are a single String filling the whole body.
absl::StatusOr<std::string_view> DecodeSingleString(std::string_view body,
                                                    std::string_view message_name) {
  WireReader r(body);
  std::string_view s;
  if (!r.ReadString(&s)) return Malformed(message_name, "unterminated string");
  if (!r.AtEnd()) return Malformed(message_name, "trailing bytes");
  return s;
}

// Reads an Int16 count that must not be negative, then skips `count` items of `item_size`.
bool SkipInt16Array(WireReader& r, int16_t count) {
  return count >= 0 && r.Skip(static_cast<size_t>(count) * 2);
}

}  // namespace

absl::StatusOr<std::string_view> DecodeQuery(std::string_view body) {
  return DecodeSingleString(body, "Query");
}

absl::StatusOr<std::string_view> DecodePasswordMessage(std::string_view body) {
  return DecodeSingleString(body, "PasswordMessage");
}

absl::StatusOr<std::string_view> DecodeCommandComplete(std::string_view body) {
  return DecodeSingleString(body, "CommandComplete");
}

absl::StatusOr<ParseMessage> DecodeParse(std::string_view body) {
  WireReader r(body);
  ParseMessage m;
  int16_t count;
  if (!r.ReadString(&m.statement)) return Malformed("Parse", "unterminated statement name");
  if (!r.ReadString(&m.query)) return Malformed("Parse", "unterminated query");
  if (!r.ReadInt16(&count)) return Malformed("Parse", "missing parameter type count");
  if (count < 0) return Malformed("Parse", "negative parameter type count");
  if (!r.Skip(static_cast<size_t>(count) * 4)) {
    return Malformed("Parse", "truncated parameter types");
  }
  if (!r.AtEnd()) return Malformed("Parse", "trailing bytes");
  m.param_type_count = static_cast<uint16_t>(count);
  return m;
}

absl::StatusOr<BindMessage> DecodeBind(std::string_view body) {
  WireReader r(body);
  BindMessage m;
  int16_t count;
  if (!r.ReadString(&m.portal)) return Malformed("Bind", "unterminated portal name");
  if (!r.ReadString(&m.statement)) return Malformed("Bind", "unterminated statement name");
  if (!r.ReadInt16(&count) || !SkipInt16Array(r, count)) {
    return Malformed("Bind", "bad parameter format codes");
  }
  if (!r.ReadInt16(&count) || count < 0) return Malformed("Bind", "bad parameter count");
  for (int16_t i = 0; i < count; ++i) {
    int32_t len;
    if (!r.ReadInt32(&len)) return Malformed("Bind", "truncated parameter length");
    if (len == -1) continue;  // NULL
    if (len < 0) return Malformed("Bind", "negative parameter length");
    if (!r.Skip(static_cast<size_t>(len))) return Malformed("Bind", "truncated parameter value");
  }
  if (!r.ReadInt16(&count) || !SkipInt16Array(r, count)) {
    return Malformed("Bind", "bad result format codes");
  }
  if (!r.AtEnd()) return Malformed("Bind", "trailing bytes");
  return m;
}

absl::StatusOr<ExecuteMessage> DecodeExecute(std::string_view body) {
  WireReader r(body);
  ExecuteMessage m;
  if (!r.ReadString(&m.portal)) return Malformed("Execute", "unterminated portal name");
  if (!r.ReadInt32(&m.max_rows)) return Malformed("Execute", "missing row limit");
  if (!r.AtEnd()) return Malformed("Execute", "trailing bytes");
  return m;
}

absl::StatusOr<DescribeOrClose> DecodeDescribeOrClose(std::string_view body) {
  WireReader r(body);
  DescribeOrClose m;
  if (!r.ReadByte(&m.kind)) return Malformed("Describe/Close", "missing kind");
  if (m.kind != 'S' && m.kind != 'P') return Malformed("Describe/Close", "kind is not S or P");
  if (!r.ReadString(&m.name)) return Malformed("Describe/Close", "unterminated name");
  if (!r.AtEnd()) return Malformed("Describe/Close", "trailing bytes");
  return m;
}

absl::StatusOr<ErrorFields> DecodeErrorOrNotice(std::string_view body) {
  WireReader r(body);
  ErrorFields f;
  std::string_view localized_severity;
  bool have_v = false;
  while (true) {
    char code;
    if (!r.ReadByte(&code)) return Malformed("ErrorResponse", "missing terminator");
    if (code == '\0') break;
    std::string_view value;
    if (!r.ReadString(&value)) return Malformed("ErrorResponse", "unterminated field");
    switch (code) {
      case 'S': localized_severity = value; break;
      case 'V': f.severity = value; have_v = true; break;
      case 'C': f.sqlstate = value; break;
      case 'M': f.message = value; break;
      case 'D': f.detail = value; break;
      case 'H': f.hint = value; break;
      default: break;  // other fields are ignored, as the docs require of frontends
    }
  }
  if (!r.AtEnd()) return Malformed("ErrorResponse", "trailing bytes");
  if (!have_v) f.severity = localized_severity;
  return f;
}

absl::StatusOr<char> DecodeReadyForQuery(std::string_view body) {
  if (body.size() != 1) return Malformed("ReadyForQuery", "body is not one byte");
  char status = body[0];
  if (status != 'I' && status != 'T' && status != 'E') {
    return Malformed("ReadyForQuery", "unknown transaction status");
  }
  return status;
}

absl::StatusOr<std::pair<std::string_view, std::string_view>> DecodeParameterStatus(
    std::string_view body) {
  WireReader r(body);
  std::string_view name, value;
  if (!r.ReadString(&name)) return Malformed("ParameterStatus", "unterminated name");
  if (!r.ReadString(&value)) return Malformed("ParameterStatus", "unterminated value");
  if (!r.AtEnd()) return Malformed("ParameterStatus", "trailing bytes");
  return std::make_pair(name, value);
}

absl::StatusOr<std::pair<int32_t, uint32_t>> DecodeBackendKeyData(std::string_view body) {
  // Protocol 3.0 keys are exactly 4 bytes (3.2 allows longer keys; we never negotiate it).
  WireReader r(body);
  int32_t pid;
  uint32_t key;
  if (!r.ReadInt32(&pid) || !r.ReadUint32(&key) || !r.AtEnd()) {
    return Malformed("BackendKeyData", "body is not 8 bytes");
  }
  return std::make_pair(pid, key);
}

absl::StatusOr<Authentication> DecodeAuthentication(std::string_view body) {
  WireReader r(body);
  Authentication a;
  if (!r.ReadInt32(&a.code)) return Malformed("Authentication", "missing request code");
  a.data = r.Rest();
  switch (a.code) {
    case kAuthOk:
    case kAuthKerberosV5:
    case kAuthCleartextPassword:
    case kAuthGss:
    case kAuthSspi:
      if (!a.data.empty()) return Malformed("Authentication", "unexpected data");
      return a;
    case kAuthMd5Password:
      if (a.data.size() != 4) return Malformed("Authentication", "md5 salt is not 4 bytes");
      return a;
    case kAuthSasl:
      // One or more names, each NUL-terminated, then an empty name.
      if (a.data.size() < 2 || a.data.substr(a.data.size() - 2) != std::string_view("\0\0", 2)) {
        return Malformed("Authentication", "unterminated SASL mechanism list");
      }
      return a;
    case kAuthGssContinue:
    case kAuthSaslContinue:
    case kAuthSaslFinal:
      return a;
    default:
      return Malformed("Authentication", absl::StrCat("unsupported request code ", a.code));
  }
}

std::vector<std::string_view> SplitSaslMechanisms(std::string_view data) {
  std::vector<std::string_view> names;
  WireReader r(data);
  std::string_view name;
  while (r.ReadString(&name) && !name.empty()) names.push_back(name);
  return names;
}

int64_t RowsFromCommandTag(std::string_view tag) {
  // Tags per the CommandComplete docs: "INSERT oid rows", "<VERB> rows" for the verbs below.
  size_t space = tag.find(' ');
  if (space == std::string_view::npos) return -1;
  std::string_view verb = tag.substr(0, space);
  std::string_view args = tag.substr(space + 1);
  int expected_numbers;
  if (verb == "INSERT") {
    expected_numbers = 2;
  } else if (verb == "SELECT" || verb == "UPDATE" || verb == "DELETE" || verb == "MERGE" ||
             verb == "COPY" || verb == "MOVE" || verb == "FETCH") {
    expected_numbers = 1;
  } else {
    return -1;
  }
  int64_t value = -1;
  for (int i = 0; i < expected_numbers; ++i) {
    size_t end = args.find(' ');
    std::string_view number = args.substr(0, end);
    if (number.empty()) return -1;
    auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc() || ptr != number.data() + number.size() || value < 0) return -1;
    if (i + 1 < expected_numbers) {
      if (end == std::string_view::npos) return -1;
      args.remove_prefix(end + 1);
    } else if (end != std::string_view::npos) {
      return -1;
    }
  }
  return value;
}

}  // namespace pgward::pgwire
