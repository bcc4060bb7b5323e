// The audit writer thread: see audit_writer.h.
#include "gateway/broker/audit_writer.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace pgward::gateway {

AuditWriter::AuditWriter(store::Store& store, AuditQueueLimits limits)
    : store_(store), limits_(limits), thread_([this] { Loop(); }) {}

AuditWriter::~AuditWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool AuditWriter::OverLimitsLocked() const {
  return queued_events_ >= limits_.max_events || queued_bytes_ >= limits_.max_bytes;
}

bool AuditWriter::Submit(std::string agent, std::string boot_id, AgentEvents events, Done done,
                         std::function<void()> resume) {
  size_t bytes = 0;
  for (const auto& [seq, e] : events.statements) bytes += e.ByteSizeLong();
  for (const auto& [seq, e] : events.session_ends) bytes += e.ByteSizeLong();
  const size_t count = events.statements.size() + events.session_ends.size();
  absl::MutexLock lock(&mu_);
  uint64_t generation = boots_[agent + "/" + boot_id].generation;
  queue_.push_back(Batch{std::move(agent), std::move(boot_id), generation, std::move(events), count, bytes,
                         std::move(done)});
  queued_events_ += count;
  queued_bytes_ += bytes;
  if (!OverLimitsLocked() || !resume) return true;
  paused_readers_.push_back(std::move(resume));
  return false;
}

void AuditWriter::StartStream(const std::string& agent, const std::string& boot_id) {
  absl::MutexLock lock(&mu_);
  BootState& boot = boots_[agent + "/" + boot_id];
  ++boot.generation;
  boot.failed = false;
}

size_t AuditWriter::queued_events() {
  absl::MutexLock lock(&mu_);
  return queued_events_;
}

size_t AuditWriter::queued_bytes() {
  absl::MutexLock lock(&mu_);
  return queued_bytes_;
}

void AuditWriter::RecordRefused(const std::string& agent,
                                const std::vector<std::pair<uint64_t, std::string>>& refused) {
  if (refused.empty()) return;
  refused_total_ += refused.size();
  uint64_t from_agent;
  {
    absl::MutexLock lock(&mu_);
    from_agent = refused_by_agent_[agent] += refused.size();
  }
  std::string sessions;
  for (size_t i = 0; i < refused.size() && i < 3; ++i) {
    absl::StrAppend(&sessions, i == 0 ? "" : ", ", "\"", refused[i].second, "\" (seq ", refused[i].first, ")");
  }
  if (refused.size() > 3) absl::StrAppend(&sessions, " and ", refused.size() - 3, " more");
  Log(LogLevel::kWarn, "audit", "refused ", refused.size(), " event(s) from agent ", agent,
      " for sessions the gateway did not give it: ", sessions, "; refused from this agent so far: ", from_agent,
      ", from all agents: ", refused_total_.load());
}

bool AuditWriter::Write(Batch& batch) {
  absl::StatusOr<store::Store::InsertedEvents> inserted =
      store_.InsertStatementEvents(batch.agent, batch.boot_id, batch.events.statements);
  if (!inserted.ok()) {
    // Not acked: the agent keeps the events and sends them again on its next stream.
    Log(LogLevel::kError, "audit", "storing ", batch.events.statements.size(), " events from agent ", batch.agent,
        " failed: ", inserted.status().message());
    return false;
  }
  std::vector<std::pair<uint64_t, std::string>> refused = std::move(inserted->refused);
  // The agent's word on how a session ended goes on its row (Store's precedence rules), but
  // only for its own sessions. No row means the session never opened (its upstream login
  // failed): nothing to record.
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (const auto& [seq, ended] : batch.events.session_ends) {
    absl::Status status = store_.RecordAgentSessionEnd(batch.agent, ended, now_ms);
    if (absl::IsPermissionDenied(status)) {
      refused.emplace_back(seq, ended.session_id());
    } else if (!status.ok() && !absl::IsNotFound(status)) {
      Log(LogLevel::kError, "audit", "recording the end of session ", ended.session_id(), " from agent ",
          batch.agent, " failed: ", status.message());
      return false;
    }
  }
  RecordRefused(batch.agent, refused);
  return true;
}

void AuditWriter::Loop() {
  for (;;) {
    std::deque<Batch> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty() && stopping_) return;
      work.swap(queue_);
    }
    for (Batch& batch : work) {
      const std::string key = batch.agent + "/" + batch.boot_id;
      bool skip;
      {
        absl::MutexLock lock(&mu_);
        const BootState& boot = boots_[key];
        skip = boot.failed || boot.generation != batch.generation;
      }
      const bool stored = !skip && Write(batch);
      std::vector<std::function<void()>> resume;
      {
        absl::MutexLock lock(&mu_);
        if (!stored && !skip) boots_[key].failed = true;
        queued_events_ -= batch.event_count;
        queued_bytes_ -= batch.bytes;
        // Half the limits: a paused agent gets room for more than one batch when it resumes.
        if (queued_events_ <= limits_.max_events / 2 && queued_bytes_ <= limits_.max_bytes / 2) {
          resume.swap(paused_readers_);
        }
      }
      batch.done(stored);
      for (auto& reader : resume) reader();
    }
  }
}

}  // namespace pgward::gateway
