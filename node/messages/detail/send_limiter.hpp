// The per-user send rate (messages.max_per_second): a token bucket per sender.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "node/errors/errors.hpp"

namespace petchat::messages::service_detail {

// Per-user token bucket: `rate` sends per second, bursts of 2 * rate. Everything that writes
// to other users' mailboxes or to the writer every send waits on costs one: a message, a
// read mark, a deletion, a group change.
class send_limiter {
 public:
  explicit send_limiter(std::uint32_t rate) : rate_(rate) {}
  bool allow(std::string const& user) {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    if (buckets_.size() > max_buckets) forget_full(now);
    auto [it, fresh] = buckets_.try_emplace(user, bucket{2.0 * rate_, now});
    auto& b = it->second;
    double elapsed = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(2.0 * rate_, b.tokens + elapsed * rate_);
    b.at = now;
    if (b.tokens < 1.0) return false;
    b.tokens -= 1.0;
    return true;
  }
  // One of the user's sends, or the refusal every such request answers with.
  std::optional<errors::failure> charge(std::string const& user) {
    if (allow(user)) return std::nullopt;
    return errors::rate_limited("more than " + std::to_string(static_cast<std::uint32_t>(rate_)) +
                                    " messages, read marks, deletions and group changes per second",
                                1000);
  }
  // Gives back a token taken by a send that stored nothing (a retry).
  void refund(std::string const& user) {
    std::lock_guard lock(mutex_);
    if (auto it = buckets_.find(user); it != buckets_.end())
      it->second.tokens = std::min(2.0 * rate_, it->second.tokens + 1.0);
  }

 private:
  struct bucket {
    double tokens;
    std::chrono::steady_clock::time_point at;
  };
  static constexpr std::size_t max_buckets = 100000;

  // Bounded: the buckets full again go (one is made full when next needed: nothing is
  // forgiven); if more than half are still in use, all go (at worst a burst is forgiven,
  // once per max_buckets / 2 new senders, not to everyone whenever the table fills).
  void forget_full(std::chrono::steady_clock::time_point now) {
    std::erase_if(buckets_, [&](auto const& entry) {
      auto const& b = entry.second;
      return b.tokens + std::chrono::duration<double>(now - b.at).count() * rate_ >= 2.0 * rate_;
    });
    if (buckets_.size() > max_buckets / 2) buckets_.clear();
  }
  double rate_;
  std::mutex mutex_;  // guards buckets_
  std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace petchat::messages::service_detail
