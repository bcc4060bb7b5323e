// ParseHttpRequest: the event endpoint's HTTP/1.1 framing, strict where parsers can disagree.
#include <catch2/catch.hpp>

#include <string>

#include "gateway/events/http_request.h"

namespace pgward::events {
namespace {

const std::string kPush =
    "POST /ssf/events HTTP/1.1\r\nHost: gw\r\nContent-Type: application/secevent+jwt\r\nContent-Length: 5\r\n\r\n"
    "a.b.c";

TEST_CASE("a whole request is parsed with its headers and body", "[events][http]") {
  HttpParse parse = ParseHttpRequest(kPush);
  REQUIRE(parse.result == HttpParse::Result::kRequest);
  CHECK(parse.consumed == kPush.size());
  CHECK(parse.request.method == "POST");
  CHECK(parse.request.target == "/ssf/events");
  CHECK(parse.request.Header("content-type") == "application/secevent+jwt");
  CHECK(parse.request.body == "a.b.c");
  CHECK(parse.request.KeepAlive());
}

TEST_CASE("a request split across reads needs more until its last byte", "[events][http]") {
  for (size_t cut = 0; cut < kPush.size(); ++cut) {
    INFO("cut at " << cut);
    CHECK(ParseHttpRequest(kPush.substr(0, cut)).result == HttpParse::Result::kNeedMore);
  }
}

TEST_CASE("two requests in one buffer are taken one at a time", "[events][http]") {
  const std::string both = kPush + kPush;
  HttpParse first = ParseHttpRequest(both);
  REQUIRE(first.result == HttpParse::Result::kRequest);
  REQUIRE(first.consumed == kPush.size());
  HttpParse second = ParseHttpRequest(std::string_view(both).substr(first.consumed));
  REQUIRE(second.result == HttpParse::Result::kRequest);
  CHECK(second.request.body == "a.b.c");
}

TEST_CASE("framing that parsers could read differently is refused", "[events][http]") {
  struct Case {
    const char* what;
    std::string request;
    int status;
  };
  const std::string head = "POST /ssf/events HTTP/1.1\r\nHost: gw\r\n";
  auto c = GENERATE_COPY(
      Case{"chunked", head + "Transfer-Encoding: chunked\r\n\r\n5\r\na.b.c\r\n0\r\n\r\n", 501},
      Case{"both framings", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\na.b.c", 501},
      Case{"two lengths", head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\na.b.c!", 400},
      Case{"signed length", head + "Content-Length: +5\r\n\r\na.b.c", 400},
      Case{"list length", head + "Content-Length: 5, 5\r\n\r\na.b.c", 400},
      Case{"space before colon", head + "Content-Length : 5\r\n\r\na.b.c", 400},
      Case{"folded header", head + "X-A: 1\r\n  2\r\nContent-Length: 5\r\n\r\na.b.c", 400},
      Case{"bare LF in a header", head + "X-A: 1\nContent-Length: 5\r\n\r\na.b.c", 400},
      Case{"no length on POST", head + "\r\n", 411},
      Case{"absolute target", "POST http://gw/ssf/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400},
      Case{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400},
      Case{"HTTP/3", "GET / HTTP/3\r\n\r\n", 505},
      Case{"double space", "POST  /ssf/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400},
      Case{"control byte in value", head + "X-A: \x01\r\nContent-Length: 0\r\n\r\n", 400});
  INFO(c.what);
  HttpParse parse = ParseHttpRequest(c.request);
  REQUIRE(parse.result == HttpParse::Result::kError);
  CHECK(parse.status == c.status);
  CHECK_FALSE(parse.reason.empty());
}

TEST_CASE("oversized heads and bodies are refused before they are buffered whole", "[events][http]") {
  HttpLimits limits;
  limits.max_head_bytes = 256;
  limits.max_body_bytes = 16;
  SECTION("a head that never ends") {
    HttpParse parse = ParseHttpRequest("GET /" + std::string(300, 'a'), limits);
    REQUIRE(parse.result == HttpParse::Result::kError);
    CHECK(parse.status == 431);
  }
  SECTION("a body larger than the limit, announced by its length") {
    HttpParse parse = ParseHttpRequest("POST /ssf/events HTTP/1.1\r\nContent-Length: 17\r\n\r\n", limits);
    REQUIRE(parse.result == HttpParse::Result::kError);
    CHECK(parse.status == 413);
  }
  SECTION("too many headers") {
    std::string request = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 70; ++i) request += "X: 1\r\n";
    request += "\r\n";
    HttpParse parse = ParseHttpRequest(request);
    REQUIRE(parse.result == HttpParse::Result::kError);
    CHECK(parse.status == 431);
  }
}

TEST_CASE("keep-alive follows the version and the Connection header", "[events][http]") {
  auto keep = [](const std::string& request) {
    HttpParse parse = ParseHttpRequest(request);
    REQUIRE(parse.result == HttpParse::Result::kRequest);
    return parse.request.KeepAlive();
  };
  CHECK(keep("GET / HTTP/1.1\r\n\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  CHECK_FALSE(keep("GET / HTTP/1.0\r\n\r\n"));
  CHECK(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
}

TEST_CASE("responses are framed by Content-Length and say when the connection closes", "[events][http]") {
  const std::string response = HttpResponse(400, "application/json", "{}", /*keep_alive=*/false);
  CHECK(response.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
  CHECK(response.find("Content-Length: 2\r\n") != std::string::npos);
  CHECK(response.find("Connection: close\r\n") != std::string::npos);
  CHECK(response.substr(response.size() - 6) == "\r\n\r\n{}");
  CHECK(HttpResponse(202, "", "", true).find("Connection: close") == std::string::npos);
}

}  // namespace
}  // namespace pgward::events
