// Rates per key (a client address, a user): a token bucket each, `per_window` events per
// `window_ms` on average and as many at once. In memory and bounded: past `max_keys` keys
// the full buckets are forgotten, and if that is not enough, all (forgiving a burst rather
// than growing). Any thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace petchat::limits {

class rate_buckets {
 public:
  // `per_window` 0: no limit.
  rate_buckets(std::uint32_t per_window, std::int64_t window_ms, std::size_t max_keys = 100000)
      : per_window_(per_window), window_ms_(window_ms), max_keys_(max_keys) {}

  // Takes one for `key`: 0 if allowed, else the milliseconds until the next one.
  std::int64_t take(std::string const& key, std::int64_t now_ms) const {
    if (per_window_ == 0) return 0;
    std::int64_t every_ms = std::max<std::int64_t>(1, window_ms_ / per_window_);
    std::lock_guard lock(mutex_);
    if (full_at_.size() >= max_keys_) std::erase_if(full_at_, [&](auto const& kv) { return kv.second <= now_ms; });
    if (full_at_.size() >= max_keys_) full_at_.clear();
    // Each bucket is kept as the time it is full again: taking one moves that on by one
    // event's worth, and a bucket a whole window's worth ahead is empty. (Never further
    // ahead than that: a clock stepped back does not hold a key back longer.)
    auto& full_at = full_at_[key];
    full_at = std::clamp(full_at, now_ms, now_ms + every_ms * per_window_);
    std::int64_t ahead = full_at + every_ms - now_ms;
    if (ahead > every_ms * per_window_) return ahead - every_ms * per_window_;
    full_at += every_ms;
    return 0;
  }

 private:
  std::uint32_t per_window_;
  std::int64_t window_ms_;
  std::size_t max_keys_;
  mutable std::mutex mutex_;  // guards full_at_
  mutable std::unordered_map<std::string, std::int64_t> full_at_;
};

}  // namespace petchat::limits
