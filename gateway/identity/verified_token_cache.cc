// Remembers tokens that already passed verification, keyed by SHA-256 of the token, until they expire.
#include "gateway/identity/verified_token_cache.h"

#include <openssl/sha.h>

namespace pgward::identity {

VerifiedTokenCache::Digest VerifiedTokenCache::Hash(std::string_view token) {
  Digest digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

std::optional<VerifiedToken> VerifiedTokenCache::Lookup(std::string_view token, int64_t now_unix) {
  const Digest key = Hash(token);
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (now_unix > it->second.valid_until_unix) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.token;
}

void VerifiedTokenCache::Insert(std::string_view token, const VerifiedToken& verified,
                                int64_t valid_until_unix, int64_t now_unix) {
  if (max_entries_ == 0) return;
  const Digest key = Hash(token);
  absl::MutexLock lock(&mu_);
  if (entries_.size() >= max_entries_ && !entries_.contains(key)) {
    absl::erase_if(entries_, [now_unix](const auto& kv) { return now_unix > kv.second.valid_until_unix; });
    // Still full of live tokens: evicting any one only costs that token a signature check later.
    if (entries_.size() >= max_entries_) entries_.erase(entries_.begin());
  }
  entries_.insert_or_assign(key, Entry{verified, valid_until_unix});
}

size_t VerifiedTokenCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace pgward::identity
