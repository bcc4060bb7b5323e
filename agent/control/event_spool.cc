#include "agent/control/event_spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/util/log.h"

namespace pgward::agent {
namespace {

constexpr size_t kFrameHeader = 8;                  // length, CRC-32
constexpr uint32_t kMaxRecordBytes = 64u << 20;     // far above any real record
constexpr char kSegmentSuffix[] = ".seg";

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

uint32_t Crc(const std::string& payload) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(payload.data()), static_cast<uInt>(payload.size())));
}

std::string Frame(const pgward::v1::SpoolRecord& record) {
  std::string payload;
  record.SerializeToString(&payload);
  std::string framed;
  framed.reserve(kFrameHeader + payload.size());
  PutU32(framed, static_cast<uint32_t>(payload.size()));
  PutU32(framed, Crc(payload));
  framed.append(payload);
  return framed;
}

std::string Errno(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

// The records of one segment, up to the first torn or corrupt one (a crash mid-write leaves
// one at the tail): how many bytes followed it is added to `dropped`.
absl::StatusOr<std::vector<pgward::v1::SpoolRecord>> ReadSegment(const std::string& path, uint64_t* size,
                                                                  uint64_t* dropped) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(Errno(("cannot open " + path).c_str()));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  *size = data.size();
  std::vector<pgward::v1::SpoolRecord> records;
  size_t at = 0;
  while (at + kFrameHeader <= data.size()) {
    const uint32_t length = GetU32(data.data() + at);
    const uint32_t crc = GetU32(data.data() + at + 4);
    if (length > kMaxRecordBytes || at + kFrameHeader + length > data.size()) break;
    std::string payload = data.substr(at + kFrameHeader, length);
    pgward::v1::SpoolRecord record;
    if (Crc(payload) != crc || !record.ParseFromString(payload)) break;
    records.push_back(std::move(record));
    at += kFrameHeader + length;
  }
  if (at < data.size()) {
    *dropped += data.size() - at;
    Log(LogLevel::kWarn, "spool", path, ": ", data.size() - at, " bytes after offset ", at,
        " are torn or corrupt (a crash while writing) and are skipped");
  }
  return records;
}

std::string IntentKey(const std::string& session_id, uint64_t intent_id) {
  return absl::StrCat(session_id, "/", intent_id);
}

}  // namespace

EventSpool::EventSpool(SpoolOptions options, std::string boot_id)
    : options_(std::move(options)), boot_id_(std::move(boot_id)) {}

absl::StatusOr<std::unique_ptr<EventSpool>> EventSpool::Open(SpoolOptions options, std::string boot_id,
                                                             SpoolRecovery* recovered) {
  if (options.max_bytes < 2 * options.segment_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the spool's bound must be at least two segments (",
                                                   2 * options.segment_bytes, " bytes)"));
  }
  if (::mkdir(options.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::UnavailableError(Errno(("cannot create spool directory " + options.dir).c_str()));
  }
  // One process per spool: a second agent on the same --data-dir would delete the first one's
  // records and resend them under its own name.
  const std::string lock_path = options.dir + "/LOCK";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return absl::UnavailableError(Errno(("cannot open " + lock_path).c_str()));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(lock_fd);
    if (error == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the spool directory ", options.dir, " is in use by another process (each agent needs its own --data-dir)"));
    }
    errno = error;
    return absl::UnavailableError(Errno(("cannot lock " + lock_path).c_str()));
  }
  std::unique_ptr<EventSpool> spool(new EventSpool(std::move(options), std::move(boot_id)));
  spool->lock_fd_ = lock_fd;
  if (absl::Status s = spool->Recover(recovered); !s.ok()) return s;
  {
    absl::MutexLock lock(&spool->mu_);
    ++spool->active_;
    if (absl::Status s = spool->StartSegmentLocked(); !s.ok()) return s;
  }
  spool->sync_thread_ = std::thread([raw = spool.get()] { raw->SyncLoop(); });
  return spool;
}

EventSpool::~EventSpool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (sync_thread_.joinable()) sync_thread_.join();
  absl::MutexLock lock(&mu_);
  for (int fd : retired_fds_) {
    ::fdatasync(fd);
    ::close(fd);
  }
  if (fd_ >= 0) {
    ::fdatasync(fd_);
    ::close(fd_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string EventSpool::PathOf(uint64_t segment) const {
  return absl::StrFormat("%s/%016d%s", options_.dir, segment, kSegmentSuffix);
}

absl::Status EventSpool::Recover(SpoolRecovery* recovered) {
  std::vector<uint64_t> numbers;
  DIR* dir = ::opendir(options_.dir.c_str());
  if (dir == nullptr) return absl::UnavailableError(Errno(("cannot read spool directory " + options_.dir).c_str()));
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    uint64_t number = 0;
    if (name.size() == 16 + std::strlen(kSegmentSuffix) && name.substr(16) == kSegmentSuffix &&
        absl::SimpleAtoi(AbslView(name.substr(0, 16)), &number)) {
      numbers.push_back(number);
    }
  }
  ::closedir(dir);
  std::sort(numbers.begin(), numbers.end());

  struct Boot {
    std::map<uint64_t, pgward::v1::AgentEvent> events;
  };
  std::vector<std::string> boot_order;
  absl::flat_hash_map<std::string, Boot> boots;
  absl::flat_hash_set<std::string> completed;             // intents whose event is spooled
  absl::flat_hash_map<std::string, uint64_t> settled;     // session -> settled through
  std::vector<std::pair<std::string, pgward::v1::SpoolIntent>> intents;
  auto settle = [&](const std::string& session, uint64_t through) {
    uint64_t& mark = settled[session];
    mark = std::max(mark, through);
  };

  absl::MutexLock lock(&mu_);
  for (uint64_t number : numbers) {
    const std::string path = PathOf(number);
    uint64_t size = 0;
    auto records = ReadSegment(path, &size, &recovered->dropped_bytes);
    if (!records.ok()) return records.status();
    if (records->empty() || !records->front().has_header()) {
      // Torn at creation (the header is its first write): it holds nothing.
      Log(LogLevel::kWarn, "spool", path, " has no header; removed");
      recovered->dropped_bytes += size;
      ::unlink(path.c_str());
      continue;
    }
    Segment segment;
    segment.boot_id = records->front().header().boot_id();
    segment.bytes = size;
    if (!boots.contains(segment.boot_id)) boot_order.push_back(segment.boot_id);
    Boot& boot = boots[segment.boot_id];
    for (size_t i = 1; i < records->size(); ++i) {
      pgward::v1::SpoolRecord& record = (*records)[i];
      switch (record.kind_case()) {
        case pgward::v1::SpoolRecord::kIntents:
          for (auto& intent : *record.mutable_intents()->mutable_intents()) {
            intents.emplace_back(record.intents().session_id(), std::move(intent));
          }
          break;
        case pgward::v1::SpoolRecord::kEvent: {
          const auto& spooled = record.event();
          segment.max_seq = std::max<uint64_t>(segment.max_seq, spooled.event().seq());
          if (spooled.event().has_statement()) {
            const std::string& session = spooled.event().statement().session_id();
            if (spooled.intent_id() != 0) completed.insert(IntentKey(session, spooled.intent_id()));
            if (spooled.settled_through() != 0) settle(session, spooled.settled_through());
          }
          boot.events[spooled.event().seq()] = spooled.event();
          break;
        }
        case pgward::v1::SpoolRecord::kSettled:
          settle(record.settled().session_id(), record.settled().through());
          break;
        default:
          break;
      }
    }
    total_bytes_ += segment.bytes;
    segments_[number] = std::move(segment);
    active_ = std::max(active_, number);
    ++recovered->segments;
    recovered->bytes += size;
  }

  for (const std::string& id : boot_order) {
    Boot& boot = boots[id];
    if (boot.events.empty()) continue;
    SpooledBoot out;
    out.boot_id = id;
    for (auto& [seq, event] : boot.events) out.events.push_back(std::move(event));
    recovered->boots.push_back(std::move(out));
  }
  for (auto& [session, intent] : intents) {
    // Copied-forward intents appear more than once; `completed` keeps them to one.
    auto it = settled.find(session);
    if (it != settled.end() && intent.intent_id() <= it->second) continue;
    if (!completed.insert(IntentKey(session, intent.intent_id())).second) continue;
    pgward::v1::StatementEvent event = std::move(*intent.mutable_statement());
    event.set_session_id(session);
    MarkOutcomeUnknown(event, "pgward: the agent stopped before this statement's result came back; it may have run");
    recovered->unknown.emplace_back(std::move(event), intent.intent_id());
  }
  // The segments holding those intents stay until their unknown events are written.
  recovering_ = !recovered->unknown.empty();
  return absl::OkStatus();
}

void EventSpool::RecoveryWritten() {
  absl::MutexLock lock(&mu_);
  recovering_ = false;
  TrimLocked();
}

absl::Status EventSpool::StartSegmentLocked() {
  const std::string path = PathOf(active_);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string error = Errno(("cannot create " + path).c_str());
    FailLocked(error);
    return absl::UnavailableError(error);
  }
  if (fd_ >= 0) retired_fds_.push_back(fd_);
  fd_ = fd;
  dir_dirty_ = true;
  segments_[active_].boot_id = boot_id_;
  pgward::v1::SpoolRecord header;
  header.mutable_header()->set_boot_id(boot_id_);
  header.mutable_header()->set_segment(active_);
  return AppendRawLocked(Frame(header));
}

absl::Status EventSpool::AppendLocked(const pgward::v1::SpoolRecord& record) {
  if (failed_) return absl::UnavailableError("the agent's event spool failed earlier (see its log)");
  if (segments_[active_].bytes >= options_.segment_bytes) {
    ++active_;
    if (absl::Status s = StartSegmentLocked(); !s.ok()) return s;
  }
  return AppendRawLocked(Frame(record));
}

absl::Status EventSpool::AppendRawLocked(const std::string& framed) {
  size_t done = 0;
  while (done < framed.size()) {
    const ssize_t n = ::write(fd_, framed.data() + done, framed.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string error = Errno(("cannot write " + PathOf(active_)).c_str());
      FailLocked(error);
      return absl::UnavailableError(error);
    }
    done += static_cast<size_t>(n);
  }
  segments_[active_].bytes += framed.size();
  total_bytes_ += framed.size();
  written_ += framed.size();
  UpdateFullLocked();
  return absl::OkStatus();
}

void EventSpool::FailLocked(const std::string& what) {
  if (failed_) return;
  failed_ = true;
  Log(LogLevel::kError, "spool", what,
      "; the event spool is failed: new statements are refused until the agent restarts");
  UpdateFullLocked();
}

bool EventSpool::FullLocked() const { return failed_ || total_bytes_ >= options_.max_bytes; }

bool EventSpool::Full() { return refusing_.load(std::memory_order_relaxed); }

void EventSpool::UpdateFullLocked() {
  const bool full = FullLocked();
  if (full == refusing_.load(std::memory_order_relaxed)) return;
  refusing_.store(full, std::memory_order_relaxed);
  if (failed_) return;  // FailLocked said so
  if (full) {
    Log(LogLevel::kError, "spool", "the event spool is full (", total_bytes_, " of ", options_.max_bytes,
        " bytes await the gateway's acknowledgement): new statements are refused until it has room");
  } else {
    Log(LogLevel::kInfo, "spool", "the event spool has room again (", total_bytes_, " bytes); statements run again");
  }
}

absl::Status EventSpool::WriteIntents(const std::string& session_id,
                                      const std::vector<pgward::v1::SpoolIntent>& intents) {
  absl::MutexLock lock(&mu_);
  // The bound is enforced where statements are admitted (Full(), checked by the session before
  // it forwards anything); intents of statements already admitted are always taken.
  if (failed_) return absl::UnavailableError("its event spool failed; see the agent's log");
  pgward::v1::SpoolRecord record;
  auto* batch = record.mutable_intents();
  batch->set_session_id(session_id);
  for (const auto& intent : intents) *batch->add_intents() = intent;
  if (absl::Status s = AppendLocked(record); !s.ok()) return s;
  auto& open = open_[session_id];
  for (const auto& intent : intents) {
    if (open.emplace(intent.intent_id(), active_).second) ++segments_[active_].open_intents, ++open_count_;
  }
  return absl::OkStatus();
}

absl::Status EventSpool::WriteEvent(const pgward::v1::AgentEvent& event, const StatementLink& link) {
  absl::MutexLock lock(&mu_);
  pgward::v1::SpoolRecord record;
  auto* spooled = record.mutable_event();
  *spooled->mutable_event() = event;
  spooled->set_intent_id(link.intent_id);
  spooled->set_settled_through(link.settled_through);
  if (absl::Status s = AppendLocked(record); !s.ok()) return s;
  Segment& segment = segments_[active_];
  segment.max_seq = std::max<uint64_t>(segment.max_seq, event.seq());
  return absl::OkStatus();
}

absl::Status EventSpool::WriteSettled(const std::string& session_id, uint64_t through) {
  absl::MutexLock lock(&mu_);
  pgward::v1::SpoolRecord record;
  record.mutable_settled()->set_session_id(session_id);
  record.mutable_settled()->set_through(through);
  return AppendLocked(record);
}

void EventSpool::IntentsSettled(const std::string& session_id, const std::vector<uint64_t>& intent_ids) {
  absl::MutexLock lock(&mu_);
  auto session = open_.find(session_id);
  if (session == open_.end()) return;
  for (uint64_t id : intent_ids) {
    auto it = session->second.find(id);
    if (it == session->second.end()) continue;
    if (auto segment = segments_.find(it->second); segment != segments_.end()) --segment->second.open_intents;
    --open_count_;
    session->second.erase(it);
  }
  if (session->second.empty()) open_.erase(session);
  TrimLocked();
}

void EventSpool::Acked(const std::string& boot_id, uint64_t seq) {
  absl::MutexLock lock(&mu_);
  uint64_t& acked = acked_[boot_id];
  acked = std::max(acked, seq);
  TrimLocked();
}

void EventSpool::TrimLocked() {
  if (recovering_) return;
  while (!segments_.empty() && segments_.begin()->first != active_) {
    auto oldest = segments_.begin();
    Segment& segment = oldest->second;
    if (segment.max_seq > acked_[segment.boot_id]) break;
    // A long statement's intent must not pin every segment after its own.
    if (segment.open_intents > 0 && !CopyForwardLocked(oldest->first).ok()) break;
    const std::string path = PathOf(oldest->first);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      FailLocked(Errno(("cannot remove " + path).c_str()));
      break;
    }
    dir_dirty_ = true;
    total_bytes_ -= segment.bytes;
    segments_.erase(oldest);
  }
  UpdateFullLocked();
}

absl::Status EventSpool::CopyForwardLocked(uint64_t number) {
  uint64_t size = 0, dropped = 0;
  auto records = ReadSegment(PathOf(number), &size, &dropped);
  if (!records.ok()) {
    Log(LogLevel::kError, "spool", "cannot copy open intents forward: ", records.status().message());
    return records.status();
  }
  for (const auto& record : *records) {
    if (!record.has_intents()) continue;
    const std::string& session_id = record.intents().session_id();
    auto session = open_.find(session_id);
    if (session == open_.end()) continue;
    pgward::v1::SpoolRecord copy;
    copy.mutable_intents()->set_session_id(session_id);
    for (const auto& intent : record.intents().intents()) {
      auto it = session->second.find(intent.intent_id());
      if (it != session->second.end() && it->second == number) *copy.mutable_intents()->add_intents() = intent;
    }
    if (copy.intents().intents_size() == 0) continue;
    if (absl::Status s = AppendLocked(copy); !s.ok()) return s;
    for (const auto& intent : copy.intents().intents()) {
      session->second[intent.intent_id()] = active_;
      ++segments_[active_].open_intents;
      --segments_[number].open_intents;
    }
  }
  if (segments_[number].open_intents != 0) {
    // An intent the file does not hold (it was torn): nothing to copy; forget it rather than pin.
    Log(LogLevel::kWarn, "spool", segments_[number].open_intents, " open intent(s) of segment ", number,
        " were not found in it");
    for (auto& [session_id, open] : open_) {
      for (auto it = open.begin(); it != open.end();) {
        if (it->second == number) {
          --open_count_;
          open.erase(it++);
        } else {
          ++it;
        }
      }
    }
    segments_[number].open_intents = 0;
  }
  return absl::OkStatus();
}

EventSpool::Stats EventSpool::stats() {
  absl::MutexLock lock(&mu_);
  Stats s;
  s.bytes = total_bytes_;
  s.max_bytes = options_.max_bytes;
  s.segments = segments_.size();
  s.open_intents = open_count_;
  s.full = FullLocked();
  s.failed = failed_;
  return s;
}

absl::Status EventSpool::Sync() {
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0 && ::fdatasync(fd_) != 0) return absl::UnavailableError(Errno("fdatasync"));
  synced_ = written_;
  return absl::OkStatus();
}

void EventSpool::SyncLoop() {
  const absl::Duration interval = absl::FromChrono(options_.sync_interval);
  for (;;) {
    int fd;
    uint64_t target;
    std::vector<int> retired;
    bool dir_dirty;
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), interval);
      if (stopping_) return;
      fd = fd_;
      target = written_;
      retired.swap(retired_fds_);
      dir_dirty = std::exchange(dir_dirty_, false);
      if (target == synced_ && retired.empty() && !dir_dirty) continue;
    }
    // Outside the lock: sessions keep writing while the disk catches up. Retired descriptors
    // are closed only here, so `fd` stays valid even if a rotation retires it meanwhile.
    bool ok = true;
    for (int old : retired) {
      ok &= ::fdatasync(old) == 0;
      ::close(old);
    }
    if (fd >= 0) ok &= ::fdatasync(fd) == 0;
    if (dir_dirty) {
      const int dir = ::open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dir >= 0) {
        ok &= ::fsync(dir) == 0;
        ::close(dir);
      }
    }
    absl::MutexLock lock(&mu_);
    if (!ok) FailLocked(Errno("cannot sync the event spool"));
    synced_ = std::max(synced_, target);
  }
}

}  // namespace pgward::agent
