// Self-registrations per client address in fixed windows: one address cannot mint
// accounts by the thousand (each costs an argon2id hash, and accounts are what a spammer
// needs). In memory: a restart forgets, which only gives back one window's allowance.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace petchat::users::detail {

class registration_limiter {
 public:
  registration_limiter(std::uint32_t per_window, std::int64_t window_ms)
      : per_window_(per_window), window_ms_(window_ms) {}

  // Reserves one registration for `address`: 0 if allowed, else the milliseconds until
  // its window ends. A reservation whose registration then fails is given back with
  // release(), so only accounts actually created count.
  std::int64_t reserve(std::string const& address, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    if (windows_.size() >= max_addresses)
      std::erase_if(windows_, [&](auto const& kv) { return expired(kv.second, now_ms); });
    if (windows_.size() >= max_addresses) windows_.clear();  // a flood of addresses: forgive rather than grow
    auto& w = windows_[address];
    if (expired(w, now_ms)) w = window{now_ms, 0};
    if (w.used >= per_window_) return std::max<std::int64_t>(1, w.start_ms + window_ms_ - now_ms);
    ++w.used;
    return 0;
  }

  void release(std::string const& address) {
    std::lock_guard lock(mutex_);
    if (auto it = windows_.find(address); it != windows_.end() && it->second.used > 0) --it->second.used;
  }

 private:
  struct window {
    std::int64_t start_ms = 0;
    std::uint32_t used = 0;
  };
  bool expired(window const& w, std::int64_t now_ms) const { return now_ms - w.start_ms >= window_ms_; }

  static constexpr std::size_t max_addresses = 100000;
  std::uint32_t per_window_;
  std::int64_t window_ms_;
  std::mutex mutex_;  // guards windows_
  std::unordered_map<std::string, window> windows_;
};

}  // namespace petchat::users::detail
