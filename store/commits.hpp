// What both stores tell of their group commits, for the node's metrics: how many write
// requests a commit made durable and how long the commit took (the write and its fsync).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>

namespace petchat::store {

// Called on the writer thread after each successful group commit; must be quick and
// thread-safe.
using commit_observer = std::function<void(std::size_t requests, std::chrono::nanoseconds took)>;

// The observer a store's writer tells, set at any time from any thread.
class commit_observers {
 public:
  void set(commit_observer fn) {
    auto p = std::make_shared<commit_observer const>(std::move(fn));
    std::lock_guard lock(mutex_);
    fn_ = std::move(p);
  }
  void committed(std::size_t requests, std::chrono::nanoseconds took) const {
    std::shared_ptr<commit_observer const> fn;
    {
      std::lock_guard lock(mutex_);
      fn = fn_;
    }
    if (fn && *fn) (*fn)(requests, took);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<commit_observer const> fn_;
};

}  // namespace petchat::store
