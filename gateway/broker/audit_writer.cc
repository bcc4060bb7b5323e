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
  queue_.push_back(Batch{std::move(agent), std::move(boot_id), std::move(events), std::move(done)});
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
      absl::Status status = store_.InsertStatementEvents(batch.agent, batch.boot_id, batch.events);
      if (!status.ok()) {
        // Not acked: the agent keeps the events and sends them again on its next connection.
        Log(LogLevel::kError, "audit", "storing ", batch.events.size(), " events from agent ",
            batch.agent, " failed: ", status.message());
      }
      batch.done(status.ok());
    }
  }
}

}  // namespace pgward::gateway
