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
  // An address stays in the table while its window has a registration counted (release()
  // frees the place of one that did not count). Full (100,000 addresses), the table first
  // forgets the addresses whose counted registrations all failed (a name taken, a wrong
  // token: cheap to make by the thousand), never one that created an account this window;
  // full of those, a new address waits until the first window ends. (Once, a full table
  // forgot every address's count.)
  std::int64_t reserve(std::string const& address, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    if (windows_.size() >= max_addresses && !windows_.contains(address)) {
      if (now_ms < full_until_ms_) return full_until_ms_ - now_ms;  // not looked at again before then
      std::erase_if(windows_, [&](auto const& kv) { return expired(kv.second, now_ms) || kv.second.accounts == 0; });
      if (windows_.size() >= max_addresses) {
        full_until_ms_ = now_ms + window_ms_;
        for (auto const& [_, w] : windows_) full_until_ms_ = std::min(full_until_ms_, w.start_ms + window_ms_);
        return std::max<std::int64_t>(1, full_until_ms_ - now_ms);
      }
    }
    auto& w = windows_[address];
    if (expired(w, now_ms)) w = window{now_ms, 0, 0};
    if (w.used >= per_window_) return std::max<std::int64_t>(1, w.start_ms + window_ms_ - now_ms);
    ++w.used;
    return 0;
  }

  void release(std::string const& address) {
    std::lock_guard lock(mutex_);
    auto it = windows_.find(address);
    if (it == windows_.end()) return;
    if (it->second.used > 0) --it->second.used;
    if (it->second.used == 0) windows_.erase(it);  // nothing counted: its place is free
  }

  // A registration of `address` that it reserved created an account.
  void created(std::string const& address) {
    std::lock_guard lock(mutex_);
    if (auto it = windows_.find(address); it != windows_.end()) ++it->second.accounts;
  }

  std::size_t addresses() const {
    std::lock_guard lock(mutex_);
    return windows_.size();
  }

 private:
  struct window {
    std::int64_t start_ms = 0;
    std::uint32_t used = 0;      // registrations counted
    std::uint32_t accounts = 0;  // of them, those that created an account
  };
  bool expired(window const& w, std::int64_t now_ms) const { return now_ms - w.start_ms >= window_ms_; }

  static constexpr std::size_t max_addresses = 100000;
  std::uint32_t per_window_;
  std::int64_t window_ms_;
  mutable std::mutex mutex_;  // guards windows_
  std::unordered_map<std::string, window> windows_;
  std::int64_t full_until_ms_ = 0;  // full of addresses whose windows run at least until then
};

}  // namespace petchat::users::detail
