// The agent's SessionEventSink: sessions' events into the EventQueue, intents into its spool.
#pragma once

#include <string>
#include <vector>

#include "agent/control/event_queue.h"
#include "agent/session/agent_session.h"

namespace pgward::agent {

class QueueSink : public SessionEventSink {
 public:
  explicit QueueSink(EventQueue& events) : events_(events) {}

  void EmitStatement(pgward::v1::StatementEvent event, StatementLink link) override {
    pgward::v1::AgentEvent wrapped;
    *wrapped.mutable_statement() = std::move(event);
    events_.Append(std::move(wrapped), link);
  }
  void EmitSessionEnded(pgward::v1::SessionEnded event) override {
    pgward::v1::AgentEvent wrapped;
    *wrapped.mutable_session_ended() = std::move(event);
    events_.Append(std::move(wrapped));
  }
  bool Backlogged() override { return events_.Backlogged(); }
  absl::Status SpoolIntents(const std::string& session_id,
                            const std::vector<pgward::v1::SpoolIntent>& intents) override {
    EventSpool* spool = events_.spool();
    return spool == nullptr ? absl::OkStatus() : spool->WriteIntents(session_id, intents);
  }
  void IntentsSettled(const std::string& session_id, const std::vector<uint64_t>& intent_ids,
                      uint64_t through) override {
    EventSpool* spool = events_.spool();
    if (spool == nullptr) return;
    // A failed write leaves the intents open in the spool: after a crash they are reported
    // with outcome unknown, which is what the agent can honestly say of them.
    if (through != 0) (void)spool->WriteSettled(session_id, through);
    spool->IntentsSettled(session_id, intent_ids);
  }
  bool SpoolRefuses() override {
    EventSpool* spool = events_.spool();
    return spool != nullptr && spool->Full();
  }

 private:
  EventQueue& events_;
};

}  // namespace pgward::agent
