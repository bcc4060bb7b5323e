// AgentSession::FrontendHandler: the statement gate at the wire. Every caller message is decoded,
// each statement analyzed and checked by statement_policy before it is appended to the bytes bound
// upstream (refused ones never leave the agent: a statement that fails in the server takes their
// place, so the transaction fails as by a server error), plain application_name SETs are rewritten, and
// sessions whose grant allows caller-supplied code get the identity check after their round trips.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "agent/session/agent_session.h"
#include "agent/session/statement_policy.h"
#include "common/pgwire/message_reader.h"

namespace pgward::agent {

class AgentSession::FrontendHandler : public pgwire::MessageHandler {
 public:
  explicit FrontendHandler(AgentSession& s) : s_(s) {}

  absl::Status OnMessage(const pgwire::MessageView& msg) override;
  absl::Status OnStreamedHeader(char type, uint32_t body_length, std::string_view header_raw) override;
  absl::Status OnStreamedBody(std::string_view chunk, bool last) override;

 private:
  std::string Refusal(const PolicyDecision& decision) const;
  // The first message of a round trip: an identity check still owed runs before it.
  void StartRoundTrip(std::string& out);
  // After a Query or Sync: if statements ran and the grant allows code, check the identity
  // settings now, or before the next round trip when a COPY FROM STDIN may be under way.
  void EndRoundTrip(std::string& out, bool ran, bool may_copy_in);

  AgentSession& s_;
};

}  // namespace pgward::agent
