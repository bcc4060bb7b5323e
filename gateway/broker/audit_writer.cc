#include "gateway/broker/audit_writer.h"

#include "common/util/log.h"

namespace pgward::gateway {

AuditWriter::AuditWriter(store::Store& store) : store_(store), thread_([this] { Loop(); }) {}

AuditWriter::~AuditWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void AuditWriter::Submit(std::string agent, std::string boot_id,
                         std::vector<std::pair<uint64_t, pgward::v1::StatementEvent>> events, Done done) {
  absl::MutexLock lock(&mu_);
  uint64_t generation = boots_[agent + "/" + boot_id].generation;
  queue_.push_back(Batch{std::move(agent), std::move(boot_id), generation, std::move(events), std::move(done)});
}

void AuditWriter::StartStream(const std::string& agent, const std::string& boot_id) {
  absl::MutexLock lock(&mu_);
  BootState& boot = boots_[agent + "/" + boot_id];
  ++boot.generation;
  boot.failed = false;
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
      absl::Status status = skip ? absl::AbortedError("an earlier batch of this stream was not stored")
                                 : store_.InsertStatementEvents(batch.agent, batch.boot_id, batch.events);
      if (!status.ok() && !skip) {
        // Not acked: the agent keeps the events and sends them again on its next stream.
        Log(LogLevel::kError, "audit", "storing ", batch.events.size(), " events from agent ", batch.agent,
            " failed: ", status.message());
        absl::MutexLock lock(&mu_);
        boots_[key].failed = true;
      }
      batch.done(status.ok());
    }
  }
}

}  // namespace pgward::gateway
