// A SessionEventSink for the session tests: records every event and reports a backlog when
// the test says so.
#pragma once

#include <atomic>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/session/agent_session.h"

namespace pgward::agent::testing {

// Sessions emit from their own executors; the test thread reads and waits.
class RecordingSink : public SessionEventSink {
 public:
  void EmitStatement(pgward::v1::StatementEvent event) override {
    absl::MutexLock lock(&mu_);
    statements_.push_back(std::move(event));
  }
  void EmitSessionEnded(pgward::v1::SessionEnded event) override {
    absl::MutexLock lock(&mu_);
    ended_.push_back(std::move(event));
  }
  bool Backlogged() override { return backlogged_.load(); }

  void SetBacklogged(bool backlogged) { backlogged_.store(backlogged); }
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
  std::vector<pgward::v1::SessionEnded> ended_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> backlogged_{false};
};

}  // namespace pgward::agent::testing
