// Listen address parsing for the gateway's endpoints.
#include <catch2/catch.hpp>

#include "gateway/relay/pg_listener.h"

using pgward::gateway::ParseHostPort;

TEST_CASE("listen addresses parse as host and port", "[listener]") {
  auto [address, host, port] = GENERATE(table<std::string, std::string, uint16_t>({
      {"127.0.0.1:15432", "127.0.0.1", 15432},
      {":15432", "0.0.0.0", 15432},
      {"[::1]:9443", "::1", 9443},
      {"0.0.0.0:0", "0.0.0.0", 0},
  }));
  std::string parsed_host;
  uint16_t parsed_port = 1;
  REQUIRE(ParseHostPort(address, &parsed_host, &parsed_port).ok());
  CHECK(parsed_host == host);
  CHECK(parsed_port == port);
}

TEST_CASE("bad listen addresses are refused with the address in the message", "[listener]") {
  auto address = GENERATE(as<std::string>{}, "15432", "host:", "host:65536", "host:port", "1.2.3.4:-1");
  std::string host;
  uint16_t port = 0;
  auto status = ParseHostPort(address, &host, &port);
  CAPTURE(address);
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Catch::Contains(address));
}
