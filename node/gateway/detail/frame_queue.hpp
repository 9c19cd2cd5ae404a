// The encoded frames a live session has queued for its writer, oldest first.
//
// Unlike std::deque (which allocates a map and a 512-byte block as soon as it exists), an
// empty queue owns no memory, and a drained one gives back what a burst made it grow to:
// idle connections are counted in KiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace petchat::gateway::detail {

// An encoded frame: the stream's own, or bytes shared with the other streams that send
// the same frame (a mailbox event to every device of its user: ws::shared_event).
struct queued_frame {
  std::string own;
  std::shared_ptr<std::string const> shared;
  std::string_view bytes() const noexcept { return shared ? std::string_view(*shared) : std::string_view(own); }
};

class frame_queue {
 public:
  bool empty() const noexcept { return head_ == frames_.size(); }
  std::size_t size() const noexcept { return frames_.size() - head_; }
  std::size_t bytes() const noexcept { return bytes_; }  // of the frames queued
  // Frames pushed so far: the number the next push gets, by which it can be found again
  // while it waits (replace_waiting).
  std::uint64_t pushed() const noexcept { return popped_ + size(); }

  // Puts `frame` in the place of the stream's own frame numbered `n` if that one still waits
  // (not popped, not cleared away). False otherwise: the caller pushes it instead.
  bool replace_waiting(std::uint64_t n, std::string frame) {
    if (n < popped_ || n >= pushed()) return false;
    auto& f = frames_[head_ + static_cast<std::size_t>(n - popped_)];
    if (f.shared) return false;
    bytes_ = bytes_ - f.own.size() + frame.size();
    f.own = std::move(frame);
    return true;
  }

  void push(std::string frame) {
    bytes_ += frame.size();
    frames_.push_back({std::move(frame), nullptr});
  }
  void push(std::shared_ptr<std::string const> frame) {
    bytes_ += frame->size();
    frames_.push_back({{}, std::move(frame)});
  }

  // Precondition: !empty().
  queued_frame pop() {
    queued_frame frame = std::move(frames_[head_++]);
    ++popped_;
    bytes_ -= frame.bytes().size();
    if (empty()) {
      clear();
    } else if (head_ >= compact_after && head_ * 2 >= frames_.size()) {
      // Under steady load the queue may never drain: drop the consumed prefix now and then.
      frames_.erase(frames_.begin(), frames_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return frame;
  }

  void clear() {
    popped_ += size();  // gone all the same: their numbers are not given again
    if (frames_.capacity() > keep_capacity)
      std::vector<queued_frame>().swap(frames_);
    else
      frames_.clear();
    head_ = 0;
    bytes_ = 0;
  }

 private:
  static constexpr std::size_t compact_after = 64;
  static constexpr std::size_t keep_capacity = 16;
  std::vector<queued_frame> frames_;
  std::size_t head_ = 0;
  std::size_t bytes_ = 0;
  std::uint64_t popped_ = 0;  // frames popped or cleared since the queue was made
};

}  // namespace petchat::gateway::detail
