// The client addresses each account logged in from lately (in memory: a restart forgets).
// A login from one of them is not held by the account's lock (login_limiter): anyone can
// lock an account by guessing at it, and must not keep its owner from logging in where
// they always do. The address's own limit still holds.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace petchat::users::detail {

class known_addresses {
 public:
  static constexpr std::int64_t kept_ms = 30LL * 24 * 3600 * 1000;
  static constexpr std::size_t per_account = 4;
  static constexpr std::size_t max_accounts = 100000;

  bool has(std::string const& account, std::string const& address, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    auto it = seen_.find(account);
    if (it == seen_.end()) return false;
    return std::any_of(it->second.begin(), it->second.end(),
                       [&](auto const& a) { return a.first == address && now_ms - a.second < kept_ms; });
  }

  // A login of `account` from `address` succeeded: it is remembered (the oldest of the
  // account's addresses making room).
  void add(std::string const& account, std::string const& address, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    if (seen_.size() >= max_accounts && !seen_.count(account)) seen_.clear();  // forgive rather than grow
    auto& list = seen_[account];
    std::erase_if(list, [&](auto const& a) { return a.first == address; });
    if (list.size() >= per_account)
      list.erase(
          std::min_element(list.begin(), list.end(), [](auto const& a, auto const& b) { return a.second < b.second; }));
    list.emplace_back(address, now_ms);
  }

 private:
  std::mutex mutex_;  // guards seen_
  std::unordered_map<std::string, std::vector<std::pair<std::string, std::int64_t>>> seen_;
};

}  // namespace petchat::users::detail
