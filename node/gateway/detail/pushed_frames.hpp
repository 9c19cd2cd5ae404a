// Frames pushed to a live session by other users' activity (presence, typing), waiting for
// room in the session's queue. Only the latest frame per subject is kept (one per contact's
// presence, one per typing user and conversation), so however fast peers produce them, a
// session holds at most one per subject and a peer's traffic can never push a reader over
// its slow-consumer limit. Subjects leave in the order they first arrived.
//
// Like frame_queue, an empty set owns no memory: idle connections are counted in KiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "client.pb.h"

namespace petchat::gateway::detail {

class pushed_frames {
 public:
  // More subjects than this waiting means the client is far behind: newer subjects are
  // dropped (presence is re-sent in full on the next connection; typing is a hint).
  static constexpr std::size_t max_subjects = 16384;

  bool empty() const noexcept { return latest_.empty(); }
  std::size_t size() const noexcept { return latest_.size(); }

  // Keeps `frame` as the latest of its subject; false if it was dropped.
  bool push(client::server_frame frame) {
    auto key = subject_of(frame);
    if (auto it = latest_.find(key); it != latest_.end()) {
      it->second = std::move(frame);
      return true;
    }
    if (latest_.size() >= max_subjects) return false;
    order_.push_back(key);
    latest_.emplace(std::move(key), std::move(frame));
    return true;
  }

  // The oldest waiting subject's latest frame. Precondition: !empty().
  client::server_frame pop() {
    auto node = latest_.extract(order_[head_++]);
    if (latest_.empty()) {
      std::unordered_map<std::string, client::server_frame>().swap(latest_);
      std::vector<std::string>().swap(order_);
      head_ = 0;
    } else if (head_ >= 1024 && head_ * 2 >= order_.size()) {
      // A session that never quite catches up: the subjects sent go, or order_ would grow
      // by one per frame for as long as it is connected.
      order_.erase(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    return std::move(node.mapped());
  }

 private:
  std::string subject_of(client::server_frame const& f) {
    if (f.has_typing()) return "t" + f.typing().from() + '\0' + f.typing().conversation_id();
    if (f.has_presence()) return "p" + f.presence().user_id();
    return "o" + std::to_string(++uncoalesced_);  // a kind with no subject: never replaced
  }

  std::unordered_map<std::string, client::server_frame> latest_;  // subject -> latest frame
  std::vector<std::string> order_;  // subjects in arrival order; order_[head_..] are waiting
  std::size_t head_ = 0;
  std::uint64_t uncoalesced_ = 0;
};

}  // namespace petchat::gateway::detail
