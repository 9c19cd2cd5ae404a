// The push records in the message store (column family `push`), kept here because the
// decision to push is written in the write that puts a message in a mailbox:
//
//   t/ user NUL device id NUL target id  -> push_target_record
//   s/ user NUL device id                -> push_settings_record
//   o/ user                              -> push_pending_record: the push outbox
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
