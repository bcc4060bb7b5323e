#include "gateway/broker/authentication_gate.h"

#include <catch2/catch.hpp>

#include "gateway/broker/agent_service.h"

namespace pgward::gateway {
namespace {

using Entry = AuthenticationGate::Entry;

TEST_CASE("one peer is refused past its bound while others still get in", "[auth-gate]") {
  AuthenticationGate gate(/*max_per_peer=*/3, /*max_total=*/10);
  for (int i = 0; i < 3; ++i) REQUIRE(gate.TryEnter("ipv4:10.0.0.1") == Entry::kAdmitted);
  CHECK(gate.TryEnter("ipv4:10.0.0.1") == Entry::kFirstRefusal);
  CHECK(gate.TryEnter("ipv4:10.0.0.1") == Entry::kRefused);  // logged once per burst
  CHECK(gate.TryEnter("ipv4:10.0.0.2") == Entry::kAdmitted);
  CHECK(gate.waiting() == 4);

  gate.Leave("ipv4:10.0.0.1");
  CHECK(gate.TryEnter("ipv4:10.0.0.1") == Entry::kAdmitted);  // a place came free
}

TEST_CASE("the total bound holds across peers", "[auth-gate]") {
  AuthenticationGate gate(/*max_per_peer=*/2, /*max_total=*/3);
  REQUIRE(gate.TryEnter("a") == Entry::kAdmitted);
  REQUIRE(gate.TryEnter("b") == Entry::kAdmitted);
  REQUIRE(gate.TryEnter("c") == Entry::kAdmitted);
  CHECK(gate.TryEnter("d") == Entry::kFirstRefusal);
  gate.Leave("a");
  gate.Leave("b");
  gate.Leave("c");
  CHECK(gate.waiting() == 0);
  // Nothing waits any more: the next burst's first refusal is logged again.
  for (int i = 0; i < 2; ++i) REQUIRE(gate.TryEnter("d") == Entry::kAdmitted);
  CHECK(gate.TryEnter("d") == Entry::kFirstRefusal);
}

TEST_CASE("peers are counted by address, without their port", "[auth-gate]") {
  CHECK(PeerAddress("ipv4:10.0.0.5:51234") == "ipv4:10.0.0.5");
  CHECK(PeerAddress("ipv6:[::1]:51234") == "ipv6:[::1]");
  CHECK(PeerAddress("ipv6:%5B::1%5D:51234") == "ipv6:%5B::1%5D");
  CHECK(PeerAddress("ipv6:[::1]") == "ipv6:[::1]");
  CHECK(PeerAddress("unix:/run/pgward.sock") == "unix:/run/pgward.sock");
  CHECK(PeerAddress("") == "");
}

}  // namespace
}  // namespace pgward::gateway
