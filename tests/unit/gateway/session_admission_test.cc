// Session caps: per principal on a connection and per connection, admitted atomically.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "gateway/broker/session_admission.h"

namespace pgward::gateway {
namespace {

constexpr char kIdp[] = "https://idp.example";

pgward::v1::Grant GrantWithCap(uint32_t max_sessions) {
  pgward::v1::Grant g;
  g.mutable_policy()->mutable_limits()->set_max_sessions(max_sessions);
  return g;
}

TEST_CASE("the principal's cap is the most permissive of its grants", "[admission]") {
  struct Case {
    std::vector<uint32_t> grant_caps;  // 0: the grant sets none
    uint32_t limit;
    bool from_grant;
  };
  const Case c = GENERATE(Case{{0}, 20, false}, Case{{2}, 2, true}, Case{{50}, 50, true}, Case{{2, 0}, 20, false},
                          Case{{2, 30}, 30, true}, Case{{2, 5, 3}, 5, true}, Case{{}, 20, false});
  std::vector<pgward::v1::Grant> grants;
  for (uint32_t cap : c.grant_caps) grants.push_back(GrantWithCap(cap));
  const PrincipalCap cap = PrincipalSessionCap(grants, 20);
  CHECK(cap.limit == c.limit);
  CHECK(cap.from_grant == c.from_grant);
}

TEST_CASE("a principal at its cap is refused until one of its sessions ends", "[admission]") {
  SessionAdmission admission;
  const PrincipalCap cap{2, true};
  auto first = admission.Admit(kIdp, "bot", "shop", cap, 100);
  auto second = admission.Admit(kIdp, "bot", "shop", cap, 100);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  auto third = admission.Admit(kIdp, "bot", "shop", cap, 100);
  REQUIRE(absl::IsResourceExhausted(third.status()));
  CHECK(std::string(third.status().message()) ==
        "principal \"bot\" already has 2 sessions on connection \"shop\" (the grant's limit); close one or ask for "
        "a higher limit");
  // Others are not affected: another principal, the same name from another issuer, another connection.
  CHECK(admission.Admit(kIdp, "other", "shop", cap, 100).ok());
  CHECK(admission.Admit("https://elsewhere.example", "bot", "shop", cap, 100).ok());
  CHECK(admission.Admit(kIdp, "bot", "crm", cap, 100).ok());
  first->Release();
  auto again = admission.Admit(kIdp, "bot", "shop", cap, 100);
  CHECK(again.ok());
  CHECK(admission.PrincipalCount(kIdp, "bot", "shop") == 2);
}

TEST_CASE("the connection cap counts every principal and says it is the gateway's", "[admission]") {
  SessionAdmission admission;
  std::vector<SessionAdmission::Ticket> held;
  for (const char* who : {"a", "b", "c"}) {
    auto t = admission.Admit(kIdp, who, "shop", PrincipalCap{20, false}, 3);
    REQUIRE(t.ok());
    held.push_back(*std::move(t));
  }
  auto refused = admission.Admit(kIdp, "d", "shop", PrincipalCap{20, false}, 3);
  REQUIRE(absl::IsResourceExhausted(refused.status()));
  CHECK(std::string(refused.status().message()) ==
        "connection \"shop\" already has 3 sessions (the gateway's per-connection limit); try again later");
  CHECK(admission.PrincipalCount(kIdp, "d", "shop") == 0);  // a refusal leaves no trace
  auto default_cap = admission.Admit(kIdp, "a", "crm", PrincipalCap{1, false}, 3);
  REQUIRE(default_cap.ok());
  auto over_default = admission.Admit(kIdp, "a", "crm", PrincipalCap{1, false}, 3);
  CHECK(std::string(over_default.status().message()).find("the gateway's per-principal limit") != std::string::npos);
  held.clear();  // destroyed tickets give their places back
  CHECK(admission.ConnectionCount("shop") == 0);
}

TEST_CASE("moved and released tickets count once", "[admission]") {
  SessionAdmission admission;
  {
    auto t = admission.Admit(kIdp, "bot", "shop", PrincipalCap{5, false}, 5);
    REQUIRE(t.ok());
    SessionAdmission::Ticket moved = *std::move(t);
    SessionAdmission::Ticket again;
    again = std::move(moved);
    CHECK(admission.PrincipalCount(kIdp, "bot", "shop") == 1);
    again.Release();
    again.Release();
    CHECK(admission.PrincipalCount(kIdp, "bot", "shop") == 0);
  }
  CHECK(admission.ConnectionCount("shop") == 0);
}

TEST_CASE("concurrent logins never pass the cap together", "[admission]") {
  SessionAdmission admission;
  constexpr int kThreads = 8, kTries = 200;
  const uint32_t cap = GENERATE(1u, 3u, 7u);
  std::atomic<int> admitted{0};
  std::atomic<int> peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kTries; ++i) {
        auto ticket = admission.Admit(kIdp, "bot", "shop", PrincipalCap{cap, true}, 1000);
        if (!ticket.ok()) continue;
        const int now = ++admitted;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        --admitted;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(peak.load() <= static_cast<int>(cap));
  CHECK(peak.load() >= 1);
  CHECK(admission.PrincipalCount(kIdp, "bot", "shop") == 0);
}

}  // namespace
}  // namespace pgward::gateway
