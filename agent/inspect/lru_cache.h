// LruCache: a small string-keyed least-recently-used map with a fixed entry cap. Not thread-safe;
// owners guard it (SqlAnalyzer) or keep it per session (StatementTracker).
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace pgward::inspect {

template <typename V>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // Returns the value and marks it most recently used, or nullptr.
  V* Find(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }

  // Inserts or replaces; evicts the least recently used entry beyond the cap.
  V& Put(std::string_view key, V value) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      it->second->second = std::move(value);
      order_.splice(order_.begin(), order_, it->second);
      return it->second->second;
    }
    order_.emplace_front(std::string(key), std::move(value));
    index_.emplace(order_.front().first, order_.begin());
    if (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    return order_.front().second;
  }

  bool Erase(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    auto node = it->second;
    index_.erase(it);
    order_.erase(node);
    return true;
  }

  void Clear() {
    index_.clear();
    order_.clear();
  }

  // Visits every entry, most recently used first.
  template <typename Fn>
  void ForEach(Fn&& fn) {
    for (auto& [key, value] : order_) fn(key, value);
  }

  size_t size() const { return order_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  using Entry = std::pair<std::string, V>;
  size_t capacity_;
  std::list<Entry> order_;
  // Keys are views into the list nodes, which never move.
  absl::flat_hash_map<std::string_view, typename std::list<Entry>::iterator> index_;
};

}  // namespace pgward::inspect
