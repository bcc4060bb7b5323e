// The agent's on-disk event spool: what the audit trail needs to survive an agent crash.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pgward/v1/agent.pb.h"
#include "pgward/v1/agent_spool.pb.h"

namespace pgward::agent {

struct SpoolOptions {
  std::string dir;                                  // <--data-dir>/spool, created 0700
  uint64_t max_bytes = 256ull << 20;                // --spool-max-bytes: then Full()
  uint64_t segment_bytes = 8ull << 20;              // a segment is closed past this size
  std::chrono::milliseconds sync_interval{20};      // --spool-sync-interval: group fdatasync
};

// How a statement event relates to the intents its session spooled (AgentSession).
struct StatementLink {
  uint64_t intent_id = 0;        // the intent this event completes; 0: none (denied, ...)
  uint64_t settled_through = 0;  // the session's intents <= this are all settled
};

// An earlier boot's events the spool still held at start: sent again under that boot's id.
struct SpooledBoot {
  std::string boot_id;
  std::vector<pgward::v1::AgentEvent> events;  // seq order
};

// A statement sent upstream whose result never came: it may have run.
inline void MarkOutcomeUnknown(pgward::v1::StatementEvent& event, std::string error) {
  event.set_rows(-1);
  event.set_outcome("unknown");
  event.set_error(std::move(error));
}

struct SpoolRecovery {
  std::vector<SpooledBoot> boots;
  // Intents of earlier boots whose result never came: events with outcome "unknown", each with
  // its intent id, for the queue to sequence in this boot (EventQueue::Append links them, so a
  // second crash does not report them twice).
  std::vector<std::pair<pgward::v1::StatementEvent, uint64_t>> unknown;
  size_t segments = 0;
  uint64_t bytes = 0;
  uint64_t dropped_bytes = 0;  // torn or corrupt tails (a crash mid-write), skipped
};

// Append-only segment files `<16 digits>.seg`, each record framed as
// [u32 length][u32 CRC-32 of the payload][SpoolRecord], little-endian. Every record is in the
// kernel (write(2)) before the call returns, so a process crash loses nothing; a thread
// fdatasyncs every sync_interval, so a machine crash loses at most that much.
//
// Intents are written before their statements go upstream and settled by the statement's event
// (or a SpoolSettled mark). Segments are deleted oldest first, once every event in them is
// acknowledged by the gateway and every intent settled; intents still open in the oldest
// segment (a long statement) are copied forward so they do not pin the segments after it.
// At max_bytes the spool is Full(): new statements are refused (fail closed) until acks free
// space. Events are always written (they complete statements already running).
//
// Thread-safe.
class EventSpool {
 public:
  // Reads what earlier boots left (into `recovered`) and starts a segment for `boot_id`.
  static absl::StatusOr<std::unique_ptr<EventSpool>> Open(SpoolOptions options, std::string boot_id,
                                                          SpoolRecovery* recovered);
  ~EventSpool();
  // The recovered unknown events are written (in this boot's segment): earlier boots' segments
  // may go once acknowledged. Until then, if there were any, nothing is deleted.
  void RecoveryWritten();
  EventSpool(const EventSpool&) = delete;
  EventSpool& operator=(const EventSpool&) = delete;

  // One record for the batch, taken even when Full() (sessions check that before they admit a
  // statement); Unavailable once an I/O error failed the spool.
  absl::Status WriteIntents(const std::string& session_id, const std::vector<pgward::v1::SpoolIntent>& intents);
  // `event` carries this boot's seq (EventQueue calls this under its lock, in seq order).
  absl::Status WriteEvent(const pgward::v1::AgentEvent& event, const StatementLink& link);
  // The session's intents <= through are settled without an event of their own.
  absl::Status WriteSettled(const std::string& session_id, uint64_t through);
  // Forgets open intents (their settling record is written or they never ran).
  void IntentsSettled(const std::string& session_id, const std::vector<uint64_t>& intent_ids);
  // The gateway stored every event of `boot_id` (this boot or an earlier one) up to `seq`.
  void Acked(const std::string& boot_id, uint64_t seq);

  struct Stats {
    uint64_t bytes = 0;
    uint64_t max_bytes = 0;
    size_t segments = 0;
    size_t open_intents = 0;
    bool full = false;
    bool failed = false;  // an I/O error: refused until the agent restarts
  };
  Stats stats();
  bool Full();
  // Waits for the data written so far to be on disk (tests, shutdown).
  absl::Status Sync();

 private:
  struct Segment {
    std::string boot_id;
    uint64_t bytes = 0;
    uint64_t max_seq = 0;        // of its events, in its boot's sequence
    size_t open_intents = 0;
  };

  EventSpool(SpoolOptions options, std::string boot_id);
  absl::Status Recover(SpoolRecovery* recovered);
  absl::Status StartSegmentLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendLocked(const pgward::v1::SpoolRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AppendRawLocked(const std::string& framed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool FullLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateFullLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TrimLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rewrites the intents still open in `segment` into the active one (TrimLocked).
  absl::Status CopyForwardLocked(uint64_t segment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string PathOf(uint64_t segment) const;
  void SyncLoop();

  const SpoolOptions options_;
  const std::string boot_id_;
  absl::Mutex mu_;
  std::map<uint64_t, Segment> segments_ ABSL_GUARDED_BY(mu_);  // by number, oldest first
  uint64_t active_ ABSL_GUARDED_BY(mu_) = 0;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Open intents: session -> intent id -> the segment holding it.
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint64_t, uint64_t>> open_ ABSL_GUARDED_BY(mu_);
  size_t open_count_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, uint64_t> acked_ ABSL_GUARDED_BY(mu_);  // boot -> seq
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool recovering_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> refusing_{false};  // FullLocked(), readable without the lock
  // The sync thread's work: written since the last fdatasync; closed segments still to sync.
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> retired_fds_ ABSL_GUARDED_BY(mu_);
  bool dir_dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread sync_thread_;
  int lock_fd_ = -1;  // holds flock(DIR/LOCK) while the spool is open; set once in Open
};

}  // namespace pgward::agent
