// What the message service keeps per conversation and per participant for the
// conversation list and groups (docs/ARCHITECTURE.md, "The message store's keys"), read
// and written inside a write: the activity (`a/`), a user's part (`p/`), the roster.
#pragma once

#include <algorithm>
#include <optional>
#include <string>

#include "message_records.pb.h"
#include "node/messages/detail/keys.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::messages::service_detail {

namespace keys = detail;
using store::cf;

template <typename T>
inline std::optional<T> parse(std::optional<std::string> const& bytes) {
  if (!bytes) return std::nullopt;
  T t;
  if (!t.ParseFromString(*bytes)) return std::nullopt;
  return t;
}

inline records::conversation_activity load_activity(store::rocks_batch& b, std::string const& conv) {
  return parse<records::conversation_activity>(b.get(cf::conversations, keys::activity_key(conv)))
      .value_or(records::conversation_activity{});
}
inline void put_activity(store::rocks_batch& b, std::string const& conv, records::conversation_activity const& a) {
  b.put(cf::conversations, keys::activity_key(conv), a.SerializeAsString());
}

inline std::optional<records::participant_record> load_participant(store::rocks_batch& b, std::string const& user,
                                                                   std::string const& conv) {
  return parse<records::participant_record>(b.get(cf::conversations, keys::participant_key(user, conv)));
}
inline void put_participant(store::rocks_batch& b, std::string const& user, std::string const& conv,
                            records::participant_record const& p) {
  b.put(cf::conversations, keys::participant_key(user, conv), p.SerializeAsString());
}

// A member of a direct conversation: their record, made on their first message in it
// (also for conversations from before the list existed: nothing older counts as unread).
inline records::participant_record direct_participant(store::rocks_batch& b, std::string const& user,
                                                      std::string const& conv, std::int64_t now) {
  if (auto p = load_participant(b, user, conv)) return *p;
  records::participant_record p;
  p.set_member(true);
  p.set_read_seq(load_activity(b, conv).messages());
  p.set_joined_at_ms(now);
  put_participant(b, user, conv, p);
  return p;
}

// A message is stored in its conversation: it takes the next position there, becomes the
// conversation's last, and counts as its sender's own (not unread for them).
inline void count_message(store::rocks_batch& b, records::stored_message& sm, std::string const& raw_id,
                          bool local_sender) {
  auto const& msg = sm.message();
  auto activity = load_activity(b, msg.conversation_id());
  activity.set_messages(activity.messages() + 1);
  activity.set_last_message_id(raw_id);
  activity.set_last_at_ms(msg.sent_at_ms());
  put_activity(b, msg.conversation_id(), activity);
  sm.set_conversation_seq(activity.messages());
  if (!local_sender) return;
  if (auto p = load_participant(b, msg.from(), msg.conversation_id())) {
    p->set_own_after_read(p->own_after_read() + 1);
    put_participant(b, msg.from(), msg.conversation_id(), *p);
  }
}

// Whether a group message at position `seq` is in `p`'s membership period.
inline bool in_period(records::participant_record const& p, std::uint64_t seq) {
  return seq > p.visible_after() && (p.visible_until() == 0 || seq <= p.visible_until());
}

inline int member_index(records::conversation_record const& c, std::string const& user) {
  auto it = std::find(c.members().begin(), c.members().end(), user);
  return it == c.members().end() ? -1 : static_cast<int>(it - c.members().begin());
}
inline client::member_role role_of(records::conversation_record const& c, std::string const& user) {
  int i = member_index(c, user);
  if (i < 0) return client::MEMBER_ROLE_UNSPECIFIED;
  if (!c.group()) return client::MEMBER;
  return i < c.roles_size() ? c.roles(i) : client::MEMBER;
}

}  // namespace petchat::messages::service_detail
