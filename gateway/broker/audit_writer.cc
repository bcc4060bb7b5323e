// The audit writer thread: see audit_writer.h.
#include "gateway/broker/audit_writer.h"

#include <chrono>

#include "absl/container/flat_hash_set.h"
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
  Batch batch;
  batch.boot_key = absl::StrCat(agent, "/", boot_id);
  batch.events.agent = std::move(agent);
  batch.events.boot_id = std::move(boot_id);
  batch.events.statements = std::move(events.statements);
  batch.events.session_ends = std::move(events.session_ends);
  batch.event_count = count;
  batch.bytes = bytes;
  batch.done = std::move(done);
  absl::MutexLock lock(&mu_);
  // A boot without state is a fresh one: its generation is new, never one a queued batch has.
  auto [boot, fresh] = boots_.try_emplace(batch.boot_key);
  if (fresh) boot->second.generation = ++generations_;
  ++boot->second.in_flight;
  batch.generation = boot->second.generation;
  queue_.push_back(std::move(batch));
  queued_events_ += count;
  queued_bytes_ += bytes;
  if (!OverLimitsLocked() || !resume) return true;
  paused_readers_.push_back(std::move(resume));
  return false;
}

void AuditWriter::StartStream(const std::string& agent, const std::string& boot_id) {
  absl::MutexLock lock(&mu_);
  auto boot = boots_.find(absl::StrCat(agent, "/", boot_id));
  if (boot == boots_.end()) return;  // nothing in flight, nothing failed: already fresh
  if (boot->second.in_flight == 0) {
    boots_.erase(boot);
    return;
  }
  boot->second.generation = ++generations_;
  boot->second.failed = false;
}

size_t AuditWriter::tracked_boots() {
  absl::MutexLock lock(&mu_);
  return boots_.size();
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

void AuditWriter::WriteAll(std::vector<Batch>& work, const std::vector<bool>& skip) {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::vector<const store::Store::AgentBatch*> all;
  std::vector<size_t> index;  // work index of each entry of `all`
  for (size_t i = 0; i < work.size(); ++i) {
    if (skip[i]) continue;
    all.push_back(&work[i].events);
    index.push_back(i);
  }
  if (all.empty()) return;
  absl::StatusOr<std::vector<store::Store::InsertedEvents>> inserted = store_.InsertAuditBatches(all, now_ms);
  if (inserted.ok()) {
    ++transactions_;
    for (size_t k = 0; k < all.size(); ++k) {
      work[index[k]].stored = true;
      RecordRefused(all[k]->agent, (*inserted)[k].refused);
    }
    return;
  }
  Log(LogLevel::kError, "audit", "storing ", all.size(), " batch(es) in one transaction failed: ",
      inserted.status().message(), all.size() > 1 ? "; retrying each batch alone" : "");
  if (all.size() == 1) return;
  // One batch the store refuses (a poisoned row, say) must not hold back other agents' events;
  // if the store itself is failing, every batch fails again and none is acked.
  absl::flat_hash_set<std::string> failed_boots;
  for (size_t k = 0; k < all.size(); ++k) {
    Batch& batch = work[index[k]];
    // Acks are cumulative (the agent drops every event up to the acked seq): acking a later
    // batch of this boot would acknowledge the failed one too. The agent resends both.
    if (failed_boots.contains(batch.boot_key)) continue;
    absl::StatusOr<std::vector<store::Store::InsertedEvents>> alone = store_.InsertAuditBatches({all[k]}, now_ms);
    if (!alone.ok()) {
      Log(LogLevel::kError, "audit", "storing ", batch.event_count, " events from agent ", batch.events.agent,
          " failed: ", alone.status().message());
      failed_boots.insert(batch.boot_key);
      continue;
    }
    ++transactions_;
    batch.stored = true;
    RecordRefused(batch.events.agent, alone->front().refused);
  }
}

void AuditWriter::Loop() {
  for (;;) {
    std::vector<Batch> work;
    std::vector<bool> skip;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty() && stopping_) return;
      // Everything queued, up to kMaxEventsPerTransaction events (at least one batch).
      size_t events = 0;
      while (!queue_.empty() &&
             (work.empty() || events + queue_.front().event_count <= kMaxEventsPerTransaction)) {
        events += queue_.front().event_count;
        work.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      for (const Batch& batch : work) {
        const BootState& boot = boots_.at(batch.boot_key);  // in flight, so tracked
        skip.push_back(boot.failed || boot.generation != batch.generation);
      }
    }
    WriteAll(work, skip);
    std::vector<std::function<void()>> resume;
    {
      absl::MutexLock lock(&mu_);
      for (size_t i = 0; i < work.size(); ++i) {
        const Batch& batch = work[i];
        queued_events_ -= batch.event_count;
        queued_bytes_ -= batch.bytes;
        auto boot = boots_.find(batch.boot_key);
        // Only the stream generation that lost the events is poisoned: if the agent already
        // reconnected (StartStream), its new stream resends them.
        if (!batch.stored && !skip[i] && boot->second.generation == batch.generation) boot->second.failed = true;
        // A boot's state lives while it has batches in flight or a failure to remember, so
        // that agents restarting (or a hostile one naming boot after boot) cannot grow it.
        if (--boot->second.in_flight == 0 && !boot->second.failed) boots_.erase(boot);
      }
      // Half the limits: a paused agent gets room for more than one batch when it resumes.
      if (queued_events_ <= limits_.max_events / 2 && queued_bytes_ <= limits_.max_bytes / 2) {
        resume.swap(paused_readers_);
      }
    }
    // Acks in queue order, after the commit: an ack never covers an event that is not stored.
    for (Batch& batch : work) batch.done(batch.stored);
    for (auto& reader : resume) reader();
  }
}

}  // namespace pgward::gateway
