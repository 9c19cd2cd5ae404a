// Rates: a token bucket (`token_bucket`), and one per key (`rate_buckets`: a client address,
// a user, a region). Header-only; depends on nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace petchat::limits {

// One bucket of `burst` tokens, one coming back every `every_ms`, kept as the time it is
// full again: taking one moves that on by `every_ms`, and a bucket `burst` tokens' worth
// ahead is empty. Never further ahead than that, so a clock stepped back holds it back no
// longer than a full refill. Not thread-safe (its owner guards it).
class token_bucket {
 public:
  // 0 if one was taken at `now_ms`, else the milliseconds until the next.
  std::int64_t take(std::int64_t now_ms, std::int64_t every_ms, std::int64_t burst) {
    full_at_ = std::clamp(full_at_, now_ms, now_ms + every_ms * burst);
    std::int64_t ahead = full_at_ + every_ms - now_ms;
    if (ahead > every_ms * burst) return ahead - every_ms * burst;
    full_at_ += every_ms;
    return 0;
  }
  bool full(std::int64_t now_ms) const { return full_at_ <= now_ms; }
  // Gives one taken back (what it was taken for did not happen).
  void give_back(std::int64_t every_ms) { full_at_ -= every_ms; }

 private:
  std::int64_t full_at_ = 0;
};

// A token bucket per key: `per_window` events per `window_ms` on average, as many at once.
// In memory and bounded: past `max_keys` keys the full buckets are forgotten, and if that is
// not enough, all (forgiving a burst rather than growing). Any thread.
class rate_buckets {
 public:
  // `per_window` 0: no limit.
  rate_buckets(std::uint32_t per_window, std::int64_t window_ms, std::size_t max_keys = 100000)
      : per_window_(per_window),
        every_ms_(std::max<std::int64_t>(1, window_ms / std::max<std::uint32_t>(1, per_window))),
        max_keys_(max_keys) {}

  // Takes one for `key`: 0 if allowed, else the milliseconds until the next one.
  std::int64_t take(std::string const& key, std::int64_t now_ms) const {
    if (per_window_ == 0) return 0;
    std::lock_guard lock(mutex_);
    if (buckets_.size() >= max_keys_) std::erase_if(buckets_, [&](auto const& kv) { return kv.second.full(now_ms); });
    if (buckets_.size() >= max_keys_) buckets_.clear();
    return buckets_[key].take(now_ms, every_ms_, per_window_);
  }

  // Gives back one taken for `key` (what it was taken for did not happen after all).
  void give_back(std::string const& key) const {
    if (per_window_ == 0) return;
    std::lock_guard lock(mutex_);
    if (auto it = buckets_.find(key); it != buckets_.end()) it->second.give_back(every_ms_);
  }

  // How many at once.
  std::uint32_t burst() const { return per_window_; }

 private:
  std::uint32_t per_window_;
  std::int64_t every_ms_;
  std::size_t max_keys_;
  mutable std::mutex mutex_;  // guards buckets_
  mutable std::unordered_map<std::string, token_bucket> buckets_;
};

}  // namespace petchat::limits
