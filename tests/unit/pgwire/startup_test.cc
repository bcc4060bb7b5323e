// DecodeStartupPacket: the untyped first packet, its bounds and its special request codes.
#include "common/pgwire/startup.h"

#include <catch2/catch.hpp>

#include <string>

#include "common/pgwire/messages.h"
#include "common/pgwire/protocol.h"
#include "common/pgwire/wire_writer.h"

namespace pgward::pgwire {
namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

// An untyped packet: length word, `code`, then `rest` verbatim.
std::string Packet(uint32_t code, std::string_view rest) {
  std::string out;
  size_t at = BeginUntypedPacket(out);
  AppendUint32(out, code);
  out.append(rest);
  FinishMessage(out, at);
  return out;
}

std::string Message(const absl::Status& st) { return std::string(st.message()); }

TEST_CASE("a startup message decodes its parameters in order", "[startup]") {
  std::string wire;
  AppendStartupMessage(wire, {{"user", "agent-7"}, {"database", "orders"},
                              {"application_name", "psql"}});
  size_t consumed = 99;
  auto result = DecodeStartupPacket(wire, &consumed);
  REQUIRE(result.ok());
  REQUIRE(result->has_value());
  const StartupPacket& p = **result;
  CHECK(p.kind == StartupPacket::Kind::kStartup);
  CHECK(p.protocol == kProtocolVersion3);
  CHECK(p.parameters == Params{{"user", "agent-7"}, {"database", "orders"},
                               {"application_name", "psql"}});
  CHECK(p.Get("database") == "orders");
  CHECK(p.Get("options").empty());
  CHECK(consumed == wire.size());
}

TEST_CASE("a startup packet followed by more bytes consumes only itself", "[startup]") {
  std::string wire;
  AppendStartupMessage(wire, {{"user", "u"}});
  size_t len = wire.size();
  AppendPasswordMessage(wire, "token");
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  REQUIRE(result.ok());
  REQUIRE(result->has_value());
  CHECK(consumed == len);
}

TEST_CASE("every prefix of a startup packet asks for more data", "[startup]") {
  std::string wire;
  AppendStartupMessage(wire, {{"user", "u"}, {"database", "d"}});
  for (size_t n = 0; n < wire.size(); ++n) {
    CAPTURE(n);
    size_t consumed = 7;
    auto result = DecodeStartupPacket(std::string_view(wire).substr(0, n), &consumed);
    REQUIRE(result.ok());
    CHECK_FALSE(result->has_value());
    CHECK(consumed == 0);
  }
}

TEST_CASE("a startup length below 8 is refused", "[startup][bounds]") {
  uint32_t len = GENERATE(0u, 4u, 7u);
  std::string wire;
  AppendUint32(wire, len);
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(result.status()) == "invalid startup packet length " + std::to_string(len));
}

TEST_CASE("a startup length over the maximum is refused from the length word alone",
          "[startup][bounds]") {
  std::string wire;
  AppendUint32(wire, kMaxStartupPacketLength + 1);
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(consumed == 0);
}

TEST_CASE("a startup packet exactly at the maximum length is accepted", "[startup][bounds]") {
  std::string wire;
  AppendStartupMessage(wire, {{"user", "u"}, {"options", ""}});
  // Grow the options value until the packet is exactly the maximum.
  std::string value(kMaxStartupPacketLength - wire.size(), 'o');
  wire.clear();
  AppendStartupMessage(wire, {{"user", "u"}, {"options", value}});
  REQUIRE(wire.size() == kMaxStartupPacketLength);
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  REQUIRE(result.ok());
  REQUIRE(result->has_value());
  CHECK((*result)->Get("options").size() == value.size());
}

TEST_CASE("a protocol major other than 3 is refused", "[startup]") {
  uint32_t code = GENERATE(2u << 16, 4u << 16, 1234u << 16 | 5677u);
  std::string wire = Packet(code, std::string("user\0u\0\0", 8));
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a newer 3.x minor version is accepted", "[startup]") {
  std::string wire = Packet(kProtocolVersion3 + 2, std::string("user\0u\0\0", 8));
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  REQUIRE(result.ok());
  CHECK((*result)->protocol == kProtocolVersion3 + 2);
}

TEST_CASE("malformed startup parameter lists are refused", "[startup]") {
  auto [rest, why] = GENERATE(table<std::string, std::string>({
      {std::string("user\0u\0", 7), "startup packet is missing its terminator"},
      {std::string("", 0), "startup packet is missing its terminator"},
      {std::string("user\0u\0database", 15), "startup packet is missing its terminator"},
      {std::string("user\0u\0database\0", 16), "startup packet has a parameter without a value"},
      {std::string("user\0u\0\0x", 9), "startup packet has data after its terminator"},
      {std::string("database\0d\0\0", 12), "no user name specified in startup packet"},
      {std::string("user\0\0\0", 7), "no user name specified in startup packet"},
  }));
  CAPTURE(why);
  size_t consumed = 0;
  auto result = DecodeStartupPacket(Packet(kProtocolVersion3, rest), &consumed);
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(result.status()) == why);
  CHECK(consumed == 0);
}

TEST_CASE("an SSLRequest decodes", "[startup]") {
  std::string wire;
  AppendSslRequest(wire);
  REQUIRE(wire.size() == 8);
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  REQUIRE(result.ok());
  CHECK((*result)->kind == StartupPacket::Kind::kSslRequest);
  CHECK(consumed == 8);
}

TEST_CASE("a GSSENCRequest decodes", "[startup]") {
  size_t consumed = 0;
  auto result = DecodeStartupPacket(Packet(kGssEncRequestCode, ""), &consumed);
  REQUIRE(result.ok());
  CHECK((*result)->kind == StartupPacket::Kind::kGssEncRequest);
}

TEST_CASE("a CancelRequest decodes its process id and key", "[startup]") {
  std::string wire;
  AppendCancelRequest(wire, 4242, 0xdeadbeef);
  size_t consumed = 0;
  auto result = DecodeStartupPacket(wire, &consumed);
  REQUIRE(result.ok());
  CHECK((*result)->kind == StartupPacket::Kind::kCancelRequest);
  CHECK((*result)->cancel_pid == 4242);
  CHECK((*result)->cancel_key == 0xdeadbeefu);
  CHECK(consumed == 16);
}

TEST_CASE("special requests with the wrong length are refused", "[startup]") {
  auto [code, rest] = GENERATE(table<uint32_t, std::string>({
      {kSslRequestCode, "abcd"},
      {kGssEncRequestCode, "x"},
      {kCancelRequestCode, "12345678x"},
      {kCancelRequestCode, "1234"},
  }));
  size_t consumed = 0;
  auto result = DecodeStartupPacket(Packet(code, rest), &consumed);
  CHECK(result.status().code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pgward::pgwire
