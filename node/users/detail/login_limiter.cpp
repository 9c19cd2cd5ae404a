#include "node/users/detail/login_limiter.hpp"

#include <algorithm>
#include <vector>

namespace petchat::users::detail {

std::int64_t login_limiter::wait_ms(std::string const& key, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  return std::max<std::int64_t>(0, it->second.locked_until_ms - now_ms);
}

void login_limiter::failed(std::string const& key, std::int64_t now_ms, std::string_view account) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= options_.max_keys) prune(now_ms);
  auto& e = entries_[key];
  forget_some(e, now_ms);
  e.failures++;
  if (!account.empty()) {
    auto h = std::hash<std::string_view>{}(account);
    auto it = std::find_if(e.by_account.begin(), e.by_account.end(), [h](auto const& p) { return p.first == h; });
    if (it != e.by_account.end()) {
      ++it->second;
    } else {
      if (e.by_account.size() >= accounts_kept) e.by_account.erase(e.by_account.begin());  // the oldest goes
      e.by_account.emplace_back(h, 1);
    }
  }
  e.last_failure_ms = now_ms;
  if (e.failures > options_.free_attempts) {
    std::uint32_t doublings = std::min<std::uint32_t>(e.failures - options_.free_attempts - 1, 40);
    std::int64_t backoff = options_.initial_backoff_ms;
    for (std::uint32_t i = 0; i < doublings && backoff < options_.max_backoff_ms; ++i) backoff *= 2;
    e.locked_until_ms = now_ms + std::min(backoff, options_.max_backoff_ms);
  }
}

void login_limiter::forget_some(entry& e, std::int64_t now_ms) const {
  auto every = options_.forget_one_every_ms;
  if (every <= 0 || e.failures == 0 || now_ms <= e.last_failure_ms) return;
  auto gone = (now_ms - e.last_failure_ms) / every;
  if (gone == 0) return;
  e.failures = static_cast<std::uint64_t>(gone) >= e.failures ? 0 : e.failures - static_cast<std::uint32_t>(gone);
  e.last_failure_ms += gone * every;  // what is left of the period carries on
}

void login_limiter::succeeded(std::string const& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  if (it->second.pending == 0) return void(entries_.erase(it));
  it->second.failures = 0;
  it->second.locked_until_ms = 0;
}

void login_limiter::forgive_account(std::string const& key, std::string_view account) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  auto& e = it->second;
  auto h = std::hash<std::string_view>{}(account);
  auto at = std::find_if(e.by_account.begin(), e.by_account.end(), [h](auto const& p) { return p.first == h; });
  if (at == e.by_account.end()) return;
  e.failures -= std::min(e.failures, at->second);
  e.by_account.erase(at);
  if (e.failures == 0 && e.pending == 0 && e.locked_until_ms == 0) entries_.erase(it);
}

bool login_limiter::begin(std::string const& key, std::int64_t now_ms, bool cap_only) {
  std::lock_guard lock(mutex_);
  if (entries_.size() >= options_.max_keys) prune(now_ms);
  auto& e = entries_[key];
  forget_some(e, now_ms);
  if (!cap_only && e.pending > 0 && e.failures + e.pending >= options_.free_attempts) return false;
  if (options_.max_pending != 0 && e.pending >= options_.max_pending) return false;
  ++e.pending;
  return true;
}

void login_limiter::end(std::string const& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;  // dropped by a prune under a flood meanwhile
  auto& e = it->second;
  if (e.pending > 0) --e.pending;
  if (e.pending == 0 && e.failures == 0) entries_.erase(it);
}

std::size_t login_limiter::tracked_keys() {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

void login_limiter::prune(std::int64_t now_ms) {
  // A key whose lock has passed and that has been quiet for the longest back-off carries
  // no information worth its memory.
  std::erase_if(entries_, [&](auto const& kv) {
    return kv.second.pending == 0 && kv.second.locked_until_ms <= now_ms &&
           kv.second.last_failure_ms + options_.max_backoff_ms <= now_ms;
  });
  if (entries_.size() < options_.max_keys) return;
  // Under a flood of distinct keys, keep the half with the most failures: a flood of
  // one-off names must not wash away the counter of the account actually under attack.
  std::vector<std::uint32_t> counts;
  counts.reserve(entries_.size());
  for (auto const& kv : entries_) counts.push_back(kv.second.failures);
  auto mid = counts.begin() + static_cast<std::ptrdiff_t>(counts.size() / 2);
  std::nth_element(counts.begin(), mid, counts.end());
  std::uint32_t threshold = *mid;
  std::erase_if(entries_, [&](auto const& kv) {
    return kv.second.failures < threshold || (kv.second.failures == threshold && kv.second.locked_until_ms <= now_ms);
  });
  // Still full (every key equally bad and locked): make room by dropping arbitrary keys.
  for (auto it = entries_.begin(); entries_.size() >= options_.max_keys / 2 && it != entries_.end();)
    it = entries_.erase(it);
}

}  // namespace petchat::users::detail
