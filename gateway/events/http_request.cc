// One HTTP/1.1 request read from a byte buffer (RFC 9112), for the gateway's event endpoint.
#include "gateway/events/http_request.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace pgward::events {
namespace {

HttpParse Error(int status, std::string reason) {
  HttpParse out;
  out.result = HttpParse::Result::kError;
  out.status = status;
  out.reason = std::move(reason);
  return out;
}

// RFC 9110 5.6.2: token characters.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || absl::string_view("!#$%&'*+-.^_`|~").find(c) !=
                                                                    absl::string_view::npos;
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// RFC 9110 5.5: field values are visible characters, spaces and tabs (obs-text allowed).
bool IsFieldValue(absl::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t') return false;
    if (u == 0x7f) return false;
  }
  return true;
}

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

bool HttpRequest::KeepAlive() const {
  const std::string connection = absl::AsciiStrToLower(AbslView(Header("connection")));
  if (minor_version == 0) return absl::StrContains(connection, "keep-alive");
  return !absl::StrContains(connection, "close");
}

HttpParse ParseHttpRequest(std::string_view input, const HttpLimits& limits) {
  const absl::string_view buffer = AbslView(input);
  const size_t head_end = buffer.find("\r\n\r\n");
  if (head_end == absl::string_view::npos) {
    if (buffer.size() > limits.max_head_bytes) return Error(431, "request head too large");
    return {};
  }
  if (head_end + 4 > limits.max_head_bytes) return Error(431, "request head too large");
  absl::string_view head = buffer.substr(0, head_end);

  HttpParse out;
  HttpRequest& request = out.request;
  size_t line_end = head.find("\r\n");
  absl::string_view request_line = head.substr(0, line_end);
  absl::string_view rest = line_end == absl::string_view::npos ? absl::string_view() : head.substr(line_end + 2);

  // request-line = method SP request-target SP HTTP-version (RFC 9112 3), single spaces.
  const size_t sp1 = request_line.find(' ');
  const size_t sp2 = sp1 == absl::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp2 == absl::string_view::npos || request_line.find(' ', sp2 + 1) != absl::string_view::npos) {
    return Error(400, "malformed request line");
  }
  absl::string_view method = request_line.substr(0, sp1);
  absl::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  absl::string_view version = request_line.substr(sp2 + 1);
  if (!IsToken(method)) return Error(400, "malformed method");
  if (target.empty() || target.front() != '/') return Error(400, "request target must be a path");
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return Error(400, "malformed request target");
  }
  if (version == "HTTP/1.1") {
    request.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    request.minor_version = 0;
  } else if (absl::StartsWith(version, "HTTP/")) {
    return Error(505, "only HTTP/1.0 and HTTP/1.1 are served");
  } else {
    return Error(400, "malformed HTTP version");
  }
  request.method = std::string(method);
  request.target = std::string(target);

  bool have_length = false;
  size_t content_length = 0;
  while (!rest.empty()) {
    line_end = rest.find("\r\n");
    absl::string_view line = rest.substr(0, line_end);
    rest = line_end == absl::string_view::npos ? absl::string_view() : rest.substr(line_end + 2);
    if (line.find('\n') != absl::string_view::npos || line.find('\r') != absl::string_view::npos) {
      return Error(400, "bare CR or LF in the request head");
    }
    if (line.empty() || line.front() == ' ' || line.front() == '\t') return Error(400, "obsolete line folding refused");
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return Error(400, "malformed header line");
    absl::string_view name = line.substr(0, colon);
    // RFC 9112 5.1: no whitespace between the name and the colon; such a message is refused.
    if (!IsToken(name)) return Error(400, "malformed header name");
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!IsFieldValue(value)) return Error(400, "malformed header value");
    if (request.headers.size() >= limits.max_headers) return Error(431, "too many headers");
    std::string lower = absl::AsciiStrToLower(name);
    if (lower == "transfer-encoding") return Error(501, "Transfer-Encoding is not supported; send Content-Length");
    if (lower == "content-length") {
      size_t length = 0;
      // Digits only: "+5", " 5", "5,5" and the like are refused (RFC 9110 8.6).
      if (value.empty() || value.size() > 12 || !std::all_of(value.begin(), value.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(value, &length)) {
        return Error(400, "malformed Content-Length");
      }
      if (have_length && length != content_length) return Error(400, "conflicting Content-Length headers");
      have_length = true;
      content_length = length;
    }
    request.headers.emplace_back(std::move(lower), std::string(value));
  }
  if (!have_length) {
    if (request.method == "POST" || request.method == "PUT") return Error(411, "Content-Length required");
  }
  if (content_length > limits.max_body_bytes) {
    return Error(413, absl::StrCat("request body over ", limits.max_body_bytes, " bytes"));
  }
  const size_t body_start = head_end + 4;
  if (buffer.size() - body_start < content_length) return {};  // the body is still arriving
  request.body = std::string(buffer.substr(body_start, content_length));
  out.result = HttpParse::Result::kRequest;
  out.consumed = body_start + content_length;
  return out;
}

std::string HttpResponse(int status, std::string_view content_type_in, std::string_view body_in, bool keep_alive,
                         std::string_view extra_headers_in) {
  const absl::string_view content_type = AbslView(content_type_in), body = AbslView(body_in),
                          extra_headers = AbslView(extra_headers_in);
  std::string out = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\n");
  if (!content_type.empty()) absl::StrAppend(&out, "Content-Type: ", content_type, "\r\n");
  absl::StrAppend(&out, "Content-Length: ", body.size(), "\r\n", "Cache-Control: no-store\r\n", extra_headers,
                  keep_alive ? "" : "Connection: close\r\n", "\r\n", body);
  return out;
}

}  // namespace pgward::events
