// Password checks per client address over time, whatever their outcome: a token bucket per
// address. The failure limiter (login_limiter) counts only wrong passwords, so without this
// one address logging in again and again with right ones (its own accounts) could keep the
// node's password checks busy for everyone. In memory, bounded like the other limiters.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace petchat::users::detail {

class check_rate {
 public:
  // `per_minute` checks a minute on average, as many at once; 0: no limit.
  explicit check_rate(std::uint32_t per_minute) : per_minute_(per_minute) {}

  // Takes a check for `address`: 0 if allowed, else the milliseconds until the next one.
  std::int64_t take(std::string const& address, std::int64_t now_ms) {
    if (per_minute_ == 0) return 0;
    std::int64_t every_ms = std::max<std::int64_t>(1, 60000 / per_minute_);
    std::lock_guard lock(mutex_);
    if (full_at_.size() >= max_addresses) std::erase_if(full_at_, [&](auto const& kv) { return kv.second <= now_ms; });
    if (full_at_.size() >= max_addresses) full_at_.clear();  // a flood of addresses: forgive rather than grow
    // Each address's bucket is kept as the time it is full again; a check moves that on by
    // one check's worth, and a bucket a whole bucket's worth ahead is empty.
    auto& full_at = full_at_[address];
    full_at = std::max(full_at, now_ms);
    std::int64_t ahead = full_at + every_ms - now_ms;
    if (ahead > every_ms * per_minute_) return ahead - every_ms * per_minute_;
    full_at += every_ms;
    return 0;
  }

 private:
  static constexpr std::size_t max_addresses = 100000;
  std::uint32_t per_minute_;
  std::mutex mutex_;  // guards full_at_
  std::unordered_map<std::string, std::int64_t> full_at_;
};

}  // namespace petchat::users::detail
