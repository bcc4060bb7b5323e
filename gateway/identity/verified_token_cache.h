// Remembers tokens that already passed verification, keyed by SHA-256 of the token, until they expire.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "gateway/identity/verified_token.h"

namespace pgward::identity {

// A reconnect storm presents the same token many times; this spares each one a signature check.
// Only the digest is kept, never the token. Entries are dropped once past exp + leeway; when
// full, expired entries are swept and then arbitrary ones evicted.
class VerifiedTokenCache {
 public:
  explicit VerifiedTokenCache(size_t max_entries = 10000) : max_entries_(max_entries) {}

  // `valid_until_unix` is the last second at which the token is still accepted.
  std::optional<VerifiedToken> Lookup(std::string_view token, int64_t now_unix);
  void Insert(std::string_view token, const VerifiedToken& verified, int64_t valid_until_unix,
              int64_t now_unix);
  size_t size() const;

 private:
  using Digest = std::array<unsigned char, 32>;
  struct Entry {
    VerifiedToken token;
    int64_t valid_until_unix;
  };
  static Digest Hash(std::string_view token);

  const size_t max_entries_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Digest, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pgward::identity
