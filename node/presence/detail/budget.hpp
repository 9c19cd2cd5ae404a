// What presence from other regions may cost, per origin region (node/presence/presence.cpp).
// Header-only; depends on nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace petchat::presence::detail {

// Presence from other regions, per origin: each entry is a look-up under the WebSocket
// manager's lock, and a `full` report a pass over every remote user under it. An honest
// region sends its snapshot (up to its 100,000 users kept here) once per
// presence_interval_s, and one entry per change in between; `full` only when the snapshot
// is one chunk of 500. Beyond the budget a body is dropped: what it would have changed runs
// out with its report's validity, or comes with the next snapshot.
class presence_budget {
 public:
  // True if a body of `entries` users (a `full` report or not) from `origin` may be applied
  // at `now_ms`, and then counted.
  bool allow(std::string const& origin, int entries, bool full, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    auto& b = of_[origin];  // origins are the directory's regions: a bounded set
    b.entries = std::min(max_entries, b.entries + double(std::max<std::int64_t>(0, now_ms - b.at_ms)) * entries_per_ms);
    b.at_ms = std::max(b.at_ms, now_ms);  // a clock stepped back gives nothing back later
    if (b.entries < entries) return false;
    if (full && now_ms - b.full_at_ms < min_full_gap_ms) return false;
    b.entries -= entries;
    if (full) b.full_at_ms = now_ms;
    return true;
  }

 private:
  static constexpr double max_entries = 120000;  // a whole snapshot of the users kept per region
  static constexpr double entries_per_ms = 20;   // 20,000 a second
  static constexpr std::int64_t min_full_gap_ms = 500;
  struct bucket {
    double entries = max_entries;
    std::int64_t at_ms = 0;
    std::int64_t full_at_ms = 0;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, bucket> of_;
};

}  // namespace petchat::presence::detail
