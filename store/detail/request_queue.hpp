// The queue in front of a commit pipeline's writer thread, shared by both engines:
// producers on any thread push requests; the writer takes everything queued, up to a
// batch limit, as one group commit.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

namespace petchat::store::detail {

template <typename Request>
class request_queue {
 public:
  // Queues `r`; false (and `r` untouched) once stop() was called.
  bool push(Request& r) {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    queue_.push_back(std::move(r));
    cv_.notify_one();
    return true;
  }

  // Waits for requests and takes up to `max` of them. Returns an empty batch only when
  // the queue is stopped and drained: the writer's signal to exit.
  std::deque<Request> take(std::size_t max) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    std::deque<Request> batch;
    while (!queue_.empty() && batch.size() < max) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    return batch;
  }

  // Refuses new requests; those already queued are still taken.
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cv_.notify_one();
  }

 private:
  std::mutex mutex_;  // guards queue_ and stopping_
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stopping_ = false;
};

}  // namespace petchat::store::detail
