// The agent's control client: what it does with the gateway's messages, without a gateway.
#include <catch2/catch.hpp>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/control/control_client.h"

namespace pgward::agent {
namespace {

using std::chrono::milliseconds;

struct Client {
  asio::io_context io;
  // Never dialled: Dispatch does not touch the network.
  std::unique_ptr<pgward::v1::AgentService::Stub> stub =
      pgward::v1::AgentService::NewStub(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  SessionManager sessions{io, SessionDeps{}};
  EventQueue events{"boot-1", 100, [] {}};
  net::GrpcDriver grpc;
  ControlClient client{io, *stub, grpc, ControlOptions{}, sessions, events};
};

TEST_CASE("the welcome's heartbeat interval is clamped to 1..60 s and defaults when unset", "[control]") {
  const auto fallback = milliseconds(10000);
  CHECK(ControlClient::HeartbeatInterval(0, fallback) == fallback);
  CHECK(ControlClient::HeartbeatInterval(5000, fallback) == milliseconds(5000));
  CHECK(ControlClient::HeartbeatInterval(1, fallback) == milliseconds(1000));
  CHECK(ControlClient::HeartbeatInterval(999, fallback) == milliseconds(1000));
  CHECK(ControlClient::HeartbeatInterval(60000, fallback) == milliseconds(60000));
  CHECK(ControlClient::HeartbeatInterval(4000000000u, fallback) == milliseconds(60000));
}

TEST_CASE("an unknown gateway message ends the control stream and is counted", "[control]") {
  Client c;
  bool welcomed = false;
  pgward::v1::GatewayMessage unknown;  // no oneof case: what a newer gateway's message parses as
  CHECK_FALSE(c.client.Dispatch(unknown, welcomed));
  CHECK(c.client.unknown_messages() == 1);
  // A message with a field number this agent does not know parses the same way.
  pgward::v1::GatewayMessage from_wire;
  const std::string newer_field = std::string("\x52\x00", 2);  // field 10, length 0
  REQUIRE(from_wire.ParseFromString(newer_field));
  CHECK_FALSE(c.client.Dispatch(from_wire, welcomed));
  CHECK(c.client.unknown_messages() == 2);
  CHECK_FALSE(welcomed);
}

TEST_CASE("known gateway messages keep the stream: welcome, ack, end and cancel of unknown sessions",
          "[control]") {
  Client c;
  bool welcomed = false;
  pgward::v1::GatewayMessage welcome;
  welcome.mutable_welcome()->set_heartbeat_interval_ms(2000);
  CHECK(c.client.Dispatch(welcome, welcomed));
  CHECK(welcomed);
  CHECK(c.client.connected());
  pgward::v1::GatewayMessage end;
  end.mutable_end_session()->set_session_id("not-running");
  end.mutable_end_session()->set_reason("killed");
  CHECK(c.client.Dispatch(end, welcomed));
  pgward::v1::GatewayMessage cancel;
  cancel.mutable_cancel_session()->set_session_id("not-running");
  CHECK(c.client.Dispatch(cancel, welcomed));
  pgward::v1::GatewayMessage ack;
  ack.mutable_ack()->set_boot_id("boot-1");
  ack.mutable_ack()->set_seq(0);
  CHECK(c.client.Dispatch(ack, welcomed));
  CHECK(c.client.unknown_messages() == 0);
}

}  // namespace
}  // namespace pgward::agent

namespace pgward::agent {

TEST_CASE("the agent token is read again from its file, and a bad file keeps the old one", "[agent][control]") {
  const std::string path = std::filesystem::temp_directory_path() / ("pgward-token-" + std::to_string(::getpid()));
  auto write = [&](const std::string& text) {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  };
  write("first\n");
  AgentToken token("first", path);
  bool changed = true;
  REQUIRE(token.Reload(&changed).ok());
  CHECK_FALSE(changed);
  write("  second \n");
  REQUIRE(token.Reload(&changed).ok());
  CHECK(changed);
  CHECK(token.Get() == "second");
  write(" \n");
  const absl::Status empty = token.Reload(&changed);
  CHECK(empty.code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(changed);
  CHECK(token.Get() == "second");
  std::filesystem::remove(path);
  CHECK_FALSE(token.Reload().ok());
  CHECK(token.Get() == "second");
  CHECK(empty.message().find("second") == std::string::npos);  // never the token
  AgentToken fixed("fixed");
  CHECK(fixed.Reload().ok());
  CHECK(fixed.Get() == "fixed");
}

}  // namespace pgward::agent
