// A SessionEventSink for the session tests: records every event and reports a backlog when
// the test says so.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/session/agent_session.h"

namespace pgward::agent::testing {

// Sessions emit from their own executors; the test thread reads and waits.
class RecordingSink : public SessionEventSink {
 public:
  void EmitStatement(pgward::v1::StatementEvent event, StatementLink link = {}) override {
    absl::MutexLock lock(&mu_);
    statements_.push_back(std::move(event));
    links_.push_back(link);
  }
  absl::Status SpoolIntents(const std::string& session_id,
                            const std::vector<pgward::v1::SpoolIntent>& intents) override {
    if (spool_fails_.load()) return absl::UnavailableError("test: the spool failed");
    absl::MutexLock lock(&mu_);
    for (const auto& intent : intents) intents_.emplace_back(session_id, intent);
    return absl::OkStatus();
  }
  bool SpoolRefuses() override { return spool_refuses_.load(); }
  void EmitSessionEnded(pgward::v1::SessionEnded event) override {
    absl::MutexLock lock(&mu_);
    ended_.push_back(std::move(event));
  }
  bool Backlogged() override { return backlogged_.load(); }

  void SetBacklogged(bool backlogged) { backlogged_.store(backlogged); }
  void SetSpoolRefuses(bool refuses) { spool_refuses_.store(refuses); }
  void SetSpoolFails(bool fails) { spool_fails_.store(fails); }
  std::vector<std::pair<std::string, pgward::v1::SpoolIntent>> intents() {
    absl::MutexLock lock(&mu_);
    return intents_;
  }
  std::vector<StatementLink> links() {
    absl::MutexLock lock(&mu_);
    return links_;
  }
  std::vector<pgward::v1::StatementEvent> statements() {
    absl::MutexLock lock(&mu_);
    return statements_;
  }
  bool WaitForStatements(size_t count, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return statements_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // The session's SessionEnded, waiting up to `timeout` for it.
  std::optional<pgward::v1::SessionEnded> WaitForEnded(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto any = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !ended_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&any), timeout)) return std::nullopt;
    return ended_.front();
  }
  size_t ended_count() {
    absl::MutexLock lock(&mu_);
    return ended_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<pgward::v1::StatementEvent> statements_ ABSL_GUARDED_BY(mu_);
  std::vector<StatementLink> links_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, pgward::v1::SpoolIntent>> intents_ ABSL_GUARDED_BY(mu_);
  std::vector<pgward::v1::SessionEnded> ended_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> backlogged_{false};
  std::atomic<bool> spool_refuses_{false};
  std::atomic<bool> spool_fails_{false};
};

}  // namespace pgward::agent::testing
