// What presence and typing from other regions may cost here (node/presence/presence.cpp).
// Header-only; depends on base/ids.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "base/ids/ids.hpp"

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

// Typing from other regions, per typist: as many as a client of this region may send (a
// second's worth, 10, in any second), so that a region replaying or inventing notices
// cannot make this one push a typing frame to every member of a large group at will.
class typing_limiter {
 public:
  // True if a notice of `typist` may be relayed at `now_ms`.
  bool allow(std::string const& typist, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    // At most 100,000 typists at once, 20,000 of one region (a region inventing names must
    // not keep the others' out), swept at most once a second: a region inventing names
    // faster than that is refused new ones, and costs no scan per notice.
    auto region = std::string(ids::region_of(typist));
    if ((seen_.size() >= max_typists || of_region_[region] >= max_of_region) && now_ms - swept_ms_ > 1000) {
      std::erase_if(seen_, [&](auto const& e) {
        if (now_ms - e.second.first <= 1000) return false;
        --of_region_[std::string(ids::region_of(e.first))];
        return true;
      });
      swept_ms_ = now_ms;
    }
    auto it = seen_.find(typist);
    if (it == seen_.end()) {
      if (seen_.size() >= max_typists || of_region_[region] >= max_of_region) return false;
      it = seen_.emplace(typist, std::pair<std::int64_t, int>{now_ms, 0}).first;
      ++of_region_[region];
    }
    auto& [since, count] = it->second;
    if (now_ms - since > 1000) since = now_ms, count = 0;
    return ++count <= 10;
  }

 private:
  static constexpr std::size_t max_typists = 100000;
  static constexpr std::size_t max_of_region = 20000;
  std::mutex mutex_;
  std::unordered_map<std::string, std::pair<std::int64_t, int>> seen_;  // window start, notices in it
  std::unordered_map<std::string, std::size_t> of_region_;              // seen_'s typists by region
  std::int64_t swept_ms_ = 0;
};

// Typing from other regions, per origin, counted in the frames it makes here (a notice to
// a group is one frame per member here who is told): the typists' own limit above does
// not bound a region that names new typists, each a member of a large group its home
// lists. 5,000 frames a second (bursts of 10,000); beyond, notices are dropped.
class typing_frames_budget {
 public:
  bool allow(std::string const& origin, std::size_t frames, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    auto& b = of_[origin];  // origins are the directory's regions: a bounded set
    b.frames = std::min(max_frames, b.frames + double(std::max<std::int64_t>(0, now_ms - b.at_ms)) * frames_per_ms);
    b.at_ms = std::max(b.at_ms, now_ms);
    if (b.frames < double(frames)) return false;
    b.frames -= double(frames);
    return true;
  }

 private:
  static constexpr double max_frames = 10000;
  static constexpr double frames_per_ms = 5;
  struct bucket {
    double frames = max_frames;
    std::int64_t at_ms = 0;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, bucket> of_;
};

}  // namespace petchat::presence::detail
