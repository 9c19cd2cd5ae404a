// What the message service keeps per conversation and per participant for the
// conversation list and groups (docs/ARCHITECTURE.md, "The message store's keys"), read
// and written inside a write: the activity (`a/`), a user's part (`p/`), the roster.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/ids/ids.hpp"
#include "message_records.pb.h"
#include "node/messages/detail/keys.hpp"
#include "node/messages/detail/limits.hpp"
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
// Both records are rewritten by every send of a conversation, often several times in one
// group commit: only the batch's last value is written (put_last).
inline void put_activity(store::rocks_batch& b, std::string const& conv, records::conversation_activity const& a) {
  b.put_last(cf::conversations, keys::activity_key(conv), a.SerializeAsString());
}

// Schedules the removal of the entry `key` of `kind` at `at_ms` (the expiry index; the
// sweep, message_service::sweep_expired, does it).
inline void expire_later(store::rocks_batch& b, std::int64_t at_ms, keys::expiring kind, std::string const& key) {
  b.put(cf::expiry, keys::expiry_entry_key(at_ms, kind, key), std::string(1, static_cast<char>(kind)));
}

// The event telling that `msg` was deleted for everyone by `by` at `at_ms`: made from the
// stored message, never from what another region sent (fields this version does not know,
// written into every member's mailbox; another conversation's id).
inline records::stored_event deletion_of(client::message const& msg, std::string const& by, std::int64_t at_ms) {
  records::stored_event e;
  auto& d = *e.mutable_deleted();
  d.set_message_id(msg.id());
  d.set_conversation_id(msg.conversation_id());
  d.set_by(by);
  d.set_at_ms(at_ms);
  return e;
}

// A conversation by an id a client named: only one of a conversation id's form is looked
// up, never another kind of key of the family (`gc/…`, `p/…`).
inline std::optional<records::conversation_record> load_conversation(store::rocks_batch& b, std::string const& conv) {
  if (!keys::well_formed_conversation_id(conv)) return std::nullopt;
  return parse<records::conversation_record>(b.get(cf::conversations, conv));
}
inline std::optional<records::participant_record> load_participant(store::rocks_batch& b, std::string const& user,
                                                                   std::string const& conv) {
  return parse<records::participant_record>(b.get(cf::conversations, keys::participant_key(user, conv)));
}
inline void put_participant(store::rocks_batch& b, std::string const& user, std::string const& conv,
                            records::participant_record const& p) {
  b.put_last(cf::conversations, keys::participant_key(user, conv), p.SerializeAsString());
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

// Own messages after the read mark whose positions a participant keeps (see own_positions).
inline constexpr int max_own_positions = 64;

// The reader's read position moves to `seq`: their own messages after it are those kept
// (exact), or, past max_own_positions, `count_after()` (a walk of the history).
template <typename CountAfter>
inline void move_read_position(records::participant_record& p, std::uint64_t seq, CountAfter&& count_after) {
  p.set_read_seq(seq);
  auto* kept = p.mutable_own_positions();
  kept->erase(std::remove_if(kept->begin(), kept->end(), [&](std::uint64_t s) { return s <= seq; }), kept->end());
  if (!p.own_overflow()) {
    p.set_own_after_read(static_cast<std::uint64_t>(kept->size()));
    return;
  }
  p.set_own_after_read(count_after());
  if (p.own_after_read() == static_cast<std::uint64_t>(kept->size())) p.set_own_overflow(false);
}

// A message is stored in its conversation: it takes the next position there, becomes the
// conversation's last unless a later one is there already (one from another region may
// arrive late), and counts as its sender's own (not unread for them). Its time moves the
// conversation's activity forward only, and never past the present (another region's
// clock, or word, may be ahead).
inline void count_message(store::rocks_batch& b, records::stored_message& sm, std::string const& raw_id,
                          bool local_sender) {
  auto const& msg = sm.message();
  auto activity = load_activity(b, msg.conversation_id());
  activity.set_messages(activity.messages() + 1);
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                 .count();
  // (an id from further ahead than the clock skew allowed would stay the last for good)
  if (raw_id > activity.last_message_id() && keys::message_id_time_ms(raw_id) <= now + max_skew_ms)
    activity.set_last_message_id(raw_id);
  activity.set_last_at_ms(std::max<std::int64_t>(activity.last_at_ms(), std::min<std::int64_t>(msg.sent_at_ms(), now)));
  put_activity(b, msg.conversation_id(), activity);
  sm.set_conversation_seq(activity.messages());
  if (!local_sender) return;
  if (auto p = load_participant(b, msg.from(), msg.conversation_id())) {
    p->set_own_after_read(p->own_after_read() + 1);
    if (p->own_positions_size() < max_own_positions)
      p->add_own_positions(activity.messages());
    else
      p->set_own_overflow(true);
    put_participant(b, msg.from(), msg.conversation_id(), *p);
  }
}

// An 8-byte counter at `key` of `family` (0 when absent), and a change of it (erased at 0).
inline std::uint64_t read_count(store::rocks_batch& b, cf family, std::string const& key) {
  auto v = b.get(family, key);
  return v ? keys::from_be64(*v) : 0;
}
inline void add_count(store::rocks_batch& b, cf family, std::string const& key, std::int64_t delta) {
  auto v = static_cast<std::int64_t>(read_count(b, family, key)) + delta;
  if (v <= 0)
    b.erase(family, key);
  else
    b.put(family, key, keys::be64(static_cast<std::uint64_t>(v)));
}

inline std::uint64_t group_count(store::rocks_batch& b, std::string const& user) {
  return read_count(b, cf::conversations, keys::group_count_key(user));
}
inline void add_group_count(store::rocks_batch& b, std::string const& user, int delta) {
  add_count(b, cf::conversations, keys::group_count_key(user), delta);
}

// A local user joins a group: their period starts now (or at the start when the group
// shows its history), nothing before counts as unread, their group count grows.
inline void start_period(store::rocks_batch& b, std::string const& conv, std::string const& user, bool history_visible,
                         std::int64_t now) {
  auto messages = load_activity(b, conv).messages();
  auto p = load_participant(b, user, conv).value_or(records::participant_record{});
  p.set_member(true);
  p.set_visible_after(history_visible ? 0 : messages);
  p.set_visible_until(0);
  p.set_read_seq(messages);
  p.set_own_after_read(0);
  p.clear_own_positions();
  p.set_own_overflow(false);
  p.set_joined_at_ms(now);
  p.set_joined_seq(messages);
  p.set_left_at_ms(0);
  p.clear_last_message_id();
  p.clear_period_last_id();
  put_participant(b, user, conv, p);
  add_group_count(b, user, 1);
}

// A member of another region: a part that only says so (their region keeps their real
// one), so that this region finds their groups too (presence: contacts, shares_presence),
// and from where here they see the group's messages (`visible_after`: the group's messages
// here when they joined a group whose history is hidden, else 0), so that their region is
// given no asset of a message before (remote_assets.cpp).
inline void note_remote_member(store::rocks_batch& b, std::string const& conv, std::string const& user,
                               std::uint64_t visible_after) {
  auto p = load_participant(b, user, conv).value_or(records::participant_record{});
  if (p.member()) return;
  p.set_member(true);
  p.set_removed_version(0);
  p.set_visible_after(visible_after);
  p.set_visible_until(0);
  put_participant(b, user, conv, p);
}

// `user` left the group `conv`: that they wrote in it is forgotten, so that, added again,
// they share presence through it only once they write again (docs/PROTOCOL.md, "Presence").
inline void forget_writer(store::rocks_batch& b, std::string const& conv, std::string const& user) {
  b.erase(cf::conversations, keys::wrote_key(user, conv));
  b.erase(cf::conversations, keys::group_writer_key(conv, user));
}

// A member of another region went, by the change of `version`. The record (which judges
// their late messages: group_remote.cpp) goes as a local former member's does,
// `retention_ms` later (forget_former_member): a home renaming its members by the
// thousand must not leave records here for good.
inline void note_remote_departure(store::rocks_batch& b, std::string const& conv, std::string const& user,
                                  std::uint64_t version, std::int64_t now, std::int64_t retention_ms) {
  forget_writer(b, conv, user);
  auto p = load_participant(b, user, conv).value_or(records::participant_record{});
  p.set_member(false);
  p.set_removed_version(version);
  p.set_left_at_ms(now);
  put_participant(b, user, conv, p);
  expire_later(b, now + retention_ms, keys::expiring::former_member, keys::participant_key(user, conv));
}

// The history key past the messages a former member's walks may meet: their period's
// greatest id, or for a part written before that was kept, their leaving time and the
// clock skew allowed (ids are stamped by their senders' clocks).
inline std::string period_end_key(std::string const& conv, records::participant_record const& p) {
  if (!p.period_last_id().empty()) return keys::successor(keys::history_key(conv, p.period_last_id()));
  return keys::history_key(conv, keys::message_id_floor(p.left_at_ms() + service_detail::max_skew_ms));
}

// A local user's record of a group they left goes once every message of their period has
// expired (`retention_ms` after they left; also their read mark and delivered position
// there), so that the groups a user left do not pile up in their list and in every walk
// of it. Back in the group since: it stays (a leave after that put off its own). A message
// of their period still stored (kept longer under a retention since lowered) puts it off
// until that one expires.
inline void forget_former_member(store::rocks_batch& b, store::rocks_db const& db, std::string const& key,
                                 std::int64_t now, std::int64_t retention_ms) {
  auto v = b.get(cf::conversations, key);
  records::participant_record p;
  if (!v || !p.ParseFromString(*v) || p.member()) return;
  auto [user, conv] = keys::split_participant_key(key);
  std::int64_t due = p.left_at_ms() + retention_ms;  // later if the retention grew since
  db.scan_reverse(
      cf::history, keys::first_of(conv), period_end_key(conv, p), [&](std::string_view k, std::string_view) {
        records::stored_message sm;
        if (auto m = db.get(cf::messages, std::string(keys::after_owner(k, conv))); m && sm.ParseFromString(*m))
          due = std::max(due, sm.message().expires_at_ms() + 1000);  // swept first
        return false;
      });
  if (due > now) return expire_later(b, due, keys::expiring::former_member, key);
  b.erase(cf::conversations, key);
  b.erase(cf::state, keys::read_key(conv, user));
  b.erase(cf::state, keys::delivered_position_key(user, conv));
}

// A local user goes from group `c` (the group as they last saw it: its title and size are
// kept for their list). Their period ends after the group's last message here; their
// record of it is forgotten `retention_ms` later (forget_former_member). False if they had
// none (a name of this region with no account, which a group of another region named).
// The period's greatest message id is the greater of the committed history's last and the
// activity's last message (which counts this batch's sends too).
inline bool end_period(store::rocks_batch& b, store::rocks_db const& db, std::string const& conv,
                       records::conversation_record const& c, std::string const& user, std::int64_t now,
                       std::int64_t retention_ms) {
  auto p = load_participant(b, user, conv);
  if (!p || !p->member()) return false;
  forget_writer(b, conv, user);
  auto activity = load_activity(b, conv);
  p->set_member(false);
  p->set_title_when_left(c.title());
  auto left = std::count(c.members().begin(), c.members().end(), user);  // a replica's roster still has them
  p->set_members_when_left(static_cast<std::uint32_t>(c.members_size() - left));
  p->set_visible_until(activity.messages());
  p->set_left_at_ms(now);
  p->set_last_message_id(activity.last_message_id());
  std::string top = activity.last_message_id().empty() ? keys::message_id_floor(0) : activity.last_message_id();
  db.scan_reverse(cf::history, keys::first_of(conv), keys::past_last_of(conv),
                  [&](std::string_view k, std::string_view) {
                    top = std::max(top, std::string(keys::after_owner(k, conv)));
                    return false;
                  });
  p->set_period_last_id(top);
  put_participant(b, user, conv, *p);
  add_group_count(b, user, -1);
  expire_later(b, now + retention_ms, keys::expiring::former_member, keys::participant_key(user, conv));
  return true;
}

// Whether a group message at position `seq` is in `p`'s membership period. A period that
// ended before the group's first message has visible_until 0 too: `member` tells it from
// one still open.
inline bool in_period(records::participant_record const& p, std::uint64_t seq) {
  return seq > p.visible_after() && (p.member() || seq <= p.visible_until());
}

inline int member_index(records::conversation_record const& c, std::string const& user) {
  auto it = std::find(c.members().begin(), c.members().end(), user);
  return it == c.members().end() ? -1 : static_cast<int>(it - c.members().begin());
}
// A replica's member of this region whom it has no account of (no events for them). Asked
// for every member at every message: a search in the sorted list (apply_group_state), not
// a walk; a list written before it was sorted is walked.
inline bool has_no_account(records::conversation_record const& c, std::string const& user) {
  if (c.no_account_sorted()) return std::binary_search(c.no_account().begin(), c.no_account().end(), user);
  return std::find(c.no_account().begin(), c.no_account().end(), user) != c.no_account().end();
}
// Whether a local member gets the group's events: not a name with no account.
inline bool gets_events(records::conversation_record const& c, std::string const& user) {
  return c.no_account_size() == 0 || !has_no_account(c, user);
}
// Whether `user` acts as a member of `c` here (sends, requests, typing, presence): listed,
// and not a name this region had no account of when the group named it. Whoever registers
// that name before home removes it gets nothing of the group, and may do nothing in it.
inline bool acts_as_member(records::conversation_record const& c, std::string const& user) {
  return member_index(c, user) >= 0 && gets_events(c, user);
}
// Whether `user` has written in the conversation `conv` (a group here; a direct one is
// keyed by the peer instead: impl::ensure_conversation). Presence is shared only between
// users who have both written (docs/PROTOCOL.md, "Presence").
template <typename Store>
inline bool wrote_in(Store const& s, std::string const& user, std::string const& conv) {
  return s.get(cf::conversations, keys::wrote_key(user, conv)).has_value();
}
// `user` wrote in the group `conv`, at its `version`. True if this is the first: both keys
// written, the group's list with the version (home sends the writers noted since its
// previous state in the next: with_writers).
inline bool note_writer(store::rocks_batch& b, std::string const& conv, std::string const& user,
                        std::uint64_t version) {
  auto listed = keys::group_writer_key(conv, user);
  if (b.get(cf::conversations, listed)) return false;
  b.put(cf::conversations, listed, keys::be64(version));
  b.put(cf::conversations, keys::wrote_key(user, conv), "");
  return true;
}
// A group message from `from` is stored here (sent here, or from another region): the
// first one notes that they wrote in the group, and appends the members who had written
// already, whose presence and `from`'s this write makes shared. Presence is told to this
// region's viewers only (`region`): for a writer of another region, only this region's
// members are looked at, not a roster of any length another region's home made.
inline void note_group_writer(store::rocks_batch& b, records::conversation_record const& c, std::string const& conv,
                              std::string const& from, std::string_view region,
                              std::vector<std::pair<std::string, std::string>>& now_shared) {
  if (!note_writer(b, conv, from, c.version())) return;
  bool from_here = ids::region_of(from) == region;
  for (auto const& member : c.members())  // listed: acting unless a name with no account
    if (member != from && (from_here || ids::region_of(member) == region) && gets_events(c, member) &&
        wrote_in(b, member, conv))
      now_shared.emplace_back(from, member);
}
// The role of the member at position `i` of `c.members()`.
inline client::member_role role_at(records::conversation_record const& c, int i) {
  if (!c.group()) return client::MEMBER;
  return i < c.roles_size() ? c.roles(i) : client::MEMBER;
}
inline client::member_role role_of(records::conversation_record const& c, std::string const& user) {
  int i = member_index(c, user);
  return i < 0 ? client::MEMBER_ROLE_UNSPECIFIED : role_at(c, i);
}

}  // namespace petchat::messages::service_detail
