// Open connections counted per client address, for http_server's caps
// (gateway.max_connections_per_address). Header-only; depends on base/net.
#pragma once

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "base/net/net.hpp"

namespace petchat::gateway::detail {

// An address is counted under its limit key (an IPv6 client's /64) and, for IPv6, its /48
// as well: one subscriber may take a new /64 per connection, and some forty of them would
// otherwise fill the node's max_connections. An exempt address (a trusted proxy) is
// counted alone, under itself, and held to no cap. Any thread.
class address_counts {
 public:
  static constexpr std::size_t wide_factor = 4;  // a /48 holds this many /64s' worth

  address_counts(std::size_t cap, std::function<bool(std::string const&)> exempt)
      : cap_(cap), exempt_(std::move(exempt)) {}

  // Counts a connection from `address`; false (and nothing counted) if it is at a cap.
  bool claim(std::string const& address) {
    auto [key, wide, exempt] = keys_of(address);
    std::lock_guard lock(mutex_);
    auto& n = counts_[key];
    if (n >= cap_ && !exempt) return false;
    if (!wide.empty()) {
      auto& w = counts_[wide];
      if (w >= cap_ * wide_factor) {
        if (n == 0) counts_.erase(key);  // no key kept for a connection not counted
        return false;
      }
      ++w;
    }
    ++n;
    return true;
  }
  // Counts a connection whatever the caps (a refusal being answered, the admin socket).
  void claim_over_cap(std::string const& address) {
    auto [key, wide, exempt] = keys_of(address);
    std::lock_guard lock(mutex_);
    ++counts_[key];
    if (!wide.empty()) ++counts_[wide];
  }
  void release(std::string const& address) {
    auto [key, wide, exempt] = keys_of(address);
    std::lock_guard lock(mutex_);
    for (auto const* k : {&key, &wide}) {
      if (k->empty()) continue;
      auto it = counts_.find(*k);
      if (it != counts_.end() && --it->second == 0) counts_.erase(it);
    }
  }
  // How many keys are held (each with a count above zero).
  std::size_t keys() const {
    std::lock_guard lock(mutex_);
    return counts_.size();
  }

 private:
  struct keys_t {
    std::string key, wide;
    bool exempt;
  };
  keys_t keys_of(std::string const& address) const {
    if (exempt_ && exempt_(address)) return {address, {}, true};
    return {net::limit_key(address), net::wide_limit_key(address), false};
  }

  std::size_t cap_;
  std::function<bool(std::string const&)> exempt_;
  mutable std::mutex mutex_;  // guards counts_; never held across I/O
  std::unordered_map<std::string, std::size_t> counts_;
};

}  // namespace petchat::gateway::detail
