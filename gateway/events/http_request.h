// One HTTP/1.1 request read from a byte buffer (RFC 9112), for the gateway's event endpoint.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgward::events {

struct HttpRequest {
  std::string method;  // as sent (methods are case-sensitive, RFC 9110 9.1)
  std::string target;  // origin-form, e.g. "/ssf/events"
  int minor_version = 1;  // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::string body;

  // The first header of that (lower-case) name, or "" .
  std::string_view Header(std::string_view lower_name) const;
  // Whether the connection stays open after the response (RFC 9112 9.3).
  bool KeepAlive() const;
};

struct HttpLimits {
  size_t max_head_bytes = 8 * 1024;   // request line and headers
  size_t max_body_bytes = 64 * 1024;  // a SET is a few kilobytes
  size_t max_headers = 64;
};

// What ParseHttpRequest made of the bytes so far.
struct HttpParse {
  enum class Result { kNeedMore, kRequest, kError };
  Result result = Result::kNeedMore;
  size_t consumed = 0;  // kRequest: the request's bytes, to drop from the buffer
  HttpRequest request;  // kRequest
  int status = 0;       // kError: the status to answer with (400, 411, 413, 431, 501, 505)
  std::string reason;   // kError: why, for the response and the log (never echoes the input)
};

// Parses one request from the front of `buffer`. Strict where leniency lets two parsers
// disagree about where a request ends (request smuggling, RFC 9112 11.2): only Content-Length
// framing (any Transfer-Encoding is refused), one Content-Length value, no obsolete line
// folding, no whitespace before a header's colon, CRLF line ends only.
HttpParse ParseHttpRequest(std::string_view buffer, const HttpLimits& limits = {});

// A response with a body, Content-Length framing and the given extra header lines.
std::string HttpResponse(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                         std::string_view extra_headers = {});

}  // namespace pgward::events
