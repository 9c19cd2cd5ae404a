// The push records in the message store (column family `push`), kept here because the
// decision to push is written in the write that puts a message in a mailbox:
//
//   t/ user NUL device id NUL target id  -> push_target_record
//   s/ user NUL device id                -> push_settings_record
//   o/ user                              -> push_pending_record: the push outbox
//   k/ identity user NUL device id NUL target id -> "": the targets that push to one
//      place (identity: 16 bytes of BLAKE2b of a Web Push or UnifiedPush endpoint, or of a
//      Matrix app id and pushkey), so that registering it takes it from everyone else
//      (format 6)
//   p/ place NUL user NUL device id NUL target id -> "": the targets whose requests go to
//      one place (an origin, detail/push_index.hpp place_of) (format 8)
//   P/ place -> 8-byte count of its p/ entries, against push.max_targets_per_host (format 8)
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_set>

namespace petchat::messages::detail {

inline std::string push_targets_owner(std::string const& user) {
  return "t/" + user + '\0';
}
inline std::string push_device_owner(std::string const& user, std::string const& device) {
  return push_targets_owner(user) + device + '\0';
}
inline std::string push_target_key(std::string const& user, std::string const& device, std::string const& id) {
  return push_device_owner(user, device) + id;
}
inline std::string push_settings_key(std::string const& user, std::string const& device) {
  return "s/" + user + '\0' + device;
}
inline std::string push_pending_key(std::string const& user) {
  return "o/" + user;
}
constexpr std::size_t push_identity_bytes = 16;
inline std::string push_identity_first(std::string const& identity) {
  return "k/" + identity;
}
inline std::string push_identity_key(std::string const& identity, std::string const& target_key) {
  return push_identity_first(identity) + target_key.substr(2);  // the target's key without "t/"
}
inline std::string push_identities_indexed_key() {
  return "push_identities_indexed";
}
inline std::string push_place_first(std::string const& place) {
  return "p/" + place + '\0';
}
inline std::string push_place_key(std::string const& place, std::string const& target_key) {
  return push_place_first(place) + target_key.substr(2);  // the target's key without "t/"
}
inline std::string push_place_count_key(std::string const& place) {
  return "P/" + place;
}
inline std::string push_places_indexed_key() {
  return "push_places_counted";
}

// The users with push targets, and who is told of their new messages. Filled at start and
// by the writes that add targets (on the writer); it never shrinks before a restart (a user
// whose targets went costs one outbox write per message until then, and the notification
// service settles their entries). Any thread.
class push_users {
 public:
  bool wants(std::string const& user) const {
    if (!any_.load(std::memory_order_relaxed)) return false;
    std::lock_guard lock(mutex_);
    return users_.contains(user);
  }
  void add(std::string const& user) {
    std::lock_guard lock(mutex_);
    users_.insert(user);
    any_ = true;
  }
  void reset(std::unordered_set<std::string> users) {
    std::lock_guard lock(mutex_);
    users_ = std::move(users);
    any_ = !users_.empty();
  }
  // Before traffic.
  void set_hook(std::function<void(std::string const&, std::uint64_t)> hook) { hook_ = std::move(hook); }
  // After a commit that put a message event at `seq` in `user`'s mailbox.
  void tell(std::string const& user, std::uint64_t seq) const {
    if (hook_ && wants(user)) hook_(user, seq);
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_set<std::string> users_;  // guarded by mutex_
  std::atomic<bool> any_{false};
  std::function<void(std::string const&, std::uint64_t)> hook_;
};

}  // namespace petchat::messages::detail
