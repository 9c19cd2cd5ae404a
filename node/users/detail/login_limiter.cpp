#include "node/users/detail/login_limiter.hpp"

#include <algorithm>

namespace petchat::users::detail {

std::int64_t login_limiter::wait_ms(std::string const& key, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  return std::max<std::int64_t>(0, it->second.locked_until_ms - now_ms);
}

void login_limiter::failed(std::string const& key, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= options_.max_keys) prune(now_ms);
  auto& e = entries_[key];
  e.failures++;
  e.last_failure_ms = now_ms;
  if (e.failures > options_.free_attempts) {
    std::uint32_t doublings = std::min<std::uint32_t>(e.failures - options_.free_attempts - 1, 40);
    std::int64_t backoff = options_.initial_backoff_ms;
    for (std::uint32_t i = 0; i < doublings && backoff < options_.max_backoff_ms; ++i) backoff *= 2;
    e.locked_until_ms = now_ms + std::min(backoff, options_.max_backoff_ms);
  }
}

void login_limiter::succeeded(std::string const& key) {
  std::lock_guard lock(mutex_);
  entries_.erase(key);
}

void login_limiter::prune(std::int64_t now_ms) {
  // A key whose lock has passed and that has been quiet for the longest back-off carries
  // no information worth its memory.
  std::erase_if(entries_, [&](auto const& kv) {
    return kv.second.locked_until_ms <= now_ms && kv.second.last_failure_ms + options_.max_backoff_ms <= now_ms;
  });
  // Under a flood of distinct keys, drop everything unlocked rather than grow without bound.
  if (entries_.size() >= options_.max_keys)
    std::erase_if(entries_, [&](auto const& kv) { return kv.second.locked_until_ms <= now_ms; });
}

}  // namespace petchat::users::detail
