// The push records in the message store (column family `push`), kept here because the
// decision to push is written in the write that puts a message in a mailbox:
//
//   t/ user NUL device id NUL target id  -> push_target_record
//   s/ user NUL device id                -> push_settings_record
//   o/ user                              -> push_pending_record: the push outbox
#pragma once

#include <string>

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

}  // namespace petchat::messages::detail
