// AuthenticationGate: bounds the agent-stream authentications waiting for the store, per peer
// address and in all, so that a flood of streams with made-up tokens is refused at once instead
// of queueing store look-ups ahead of callers' logins (AgentServiceImpl::AuthenticateOffThread).
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace pgward::gateway {

class AuthenticationGate {
 public:
  AuthenticationGate(int max_per_peer, int max_total) : max_per_peer_(max_per_peer), max_total_(max_total) {}

  enum class Entry {
    kAdmitted,        // call Leave(peer) once its authentication is done
    kRefused,         // over a bound; nothing to give back
    kFirstRefusal,    // the same, and the first since nothing waited: worth a log line
  };
  Entry TryEnter(const std::string& peer) {
    absl::MutexLock lock(&mu_);
    auto it = by_peer_.find(peer);
    const int mine = it == by_peer_.end() ? 0 : it->second;
    if (mine >= max_per_peer_ || total_ >= max_total_) {
      const bool first = !refusing_;
      refusing_ = true;
      return first ? Entry::kFirstRefusal : Entry::kRefused;
    }
    ++by_peer_[peer];
    ++total_;
    return Entry::kAdmitted;
  }

  void Leave(const std::string& peer) {
    absl::MutexLock lock(&mu_);
    if (auto it = by_peer_.find(peer); it != by_peer_.end() && --it->second == 0) by_peer_.erase(it);
    if (--total_ == 0) refusing_ = false;
  }

  int waiting() {
    absl::MutexLock lock(&mu_);
    return total_;
  }

 private:
  const int max_per_peer_;
  const int max_total_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> by_peer_ ABSL_GUARDED_BY(mu_);
  int total_ ABSL_GUARDED_BY(mu_) = 0;
  bool refusing_ ABSL_GUARDED_BY(mu_) = false;  // since the last time nothing waited
};

}  // namespace pgward::gateway
