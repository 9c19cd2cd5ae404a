// What the message service answers without writing: mailbox positions and events,
// history, single messages, membership, the typing rule and contacts. These run on the
// caller's thread and read RocksDB directly (memtables and the block cache); see
// messages.hpp for each call's contract.
#include <unordered_set>

#include "node/messages/detail/delivered_mark.hpp"
#include "node/messages/detail/json_cost.hpp"
#include "node/messages/detail/service.hpp"
#include "node/messages/messages.hpp"

namespace petchat::messages {

std::uint64_t message_service::mailbox_head(std::string const& user) const {
  return impl_->stored_head(user);
}

std::uint64_t message_service::acked(std::string const& user, std::string const& device) const {
  auto& db = impl_->db;
  return delivered_mark::device_position(db.get(cf::state, keys::delivered_key(user)), device,
                                         [&] { return db.get(cf::state, keys::ack_key(user, device)); });
}

// Seqs one events_after call looks at, at most: each skipped one may be a message read, and
// a mailbox of hidden or expired messages must not hold an I/O thread for long.
constexpr std::size_t max_events_looked_at = 4096;

mailbox_read message_service::events_after(std::string const& user, std::uint64_t after, std::size_t limit) const {
  auto& m = *impl_;
  mailbox_read out;
  out.last_seq = after;
  std::int64_t now = now_ms();
  std::size_t looked = 0;
  // From where a run holding after + 1 can start (detail/mailbox_runs.hpp).
  m.db.scan(cf::mailbox, keys::mailbox_key(user, keys::earliest_run_start(after + 1)), keys::past_last_of(user),
            [&](std::string_view key, std::string_view value) {
              bool more = true;
              std::uint64_t first = keys::from_be64(keys::after_owner(key, user));
              bool parsed = keys::each_run_event(first, value, [&](std::uint64_t seq, records::stored_event const& e) {
                if (seq <= after) return true;
                if (looked++ == max_events_looked_at) return more = false;  // the rest in the next call
                out.last_seq = seq;
                client::event ev;
                ev.set_seq(seq);
                std::optional<client::message> content;
                if (e.has_message_id()) {
                  auto sm = m.load(e.message_id());
                  content = sm ? m.visible(*sm, user, now) : std::nullopt;  // expired or deleted: skipped
                  // Never another user's message (a group's message is in the mailbox of each member).
                  if (content && content->from() != user && content->to() != user &&
                      !keys::is_group(content->conversation_id()))
                    content.reset();
                }
                if (e.has_conversation_change_ref()) {  // a change stored once for its members
                  auto shared = m.db.get(cf::conversations, e.conversation_change_ref());
                  if (!shared || !ev.mutable_conversation_change()->ParseFromString(*shared)) return true;
                } else if (!to_client_event(e, std::move(content), ev)) {
                  return true;
                }
                out.events.push_back(std::move(ev));
                more = out.events.size() < limit;
                return more;
              });
              if (!parsed && first > after && more) out.last_seq = first;
              return more;
            });
  return out;
}

result<history_page> message_service::history(std::string const& user, std::string const& conv,
                                              history_query const& q) const {
  auto& m = *impl_;
  // Someone who was never in the conversation is answered as if there were none: a direct
  // conversation's id is computable from its two users, so any other answer would tell
  // whether they ever wrote to each other.
  auto none = [&] { return fail(code::conversation_not_found, "no conversation '" + conv + "'"); };
  if (!m.conversation(conv)) return none();
  // A group's history as a member sees it: their membership period (also after they left).
  std::optional<records::participant_record> period;
  if (keys::is_group(conv)) {
    period = parse<records::participant_record>(m.db.get(cf::conversations, keys::participant_key(user, conv)));
    if (!period) return none();
  } else if (!m.member(user, conv)) {
    return none();
  }
  std::string lower = keys::first_of(conv);
  std::string upper = keys::past_last_of(conv);
  auto bound = [&](std::optional<std::string> const& id, char const* field) -> result<std::string> {
    auto raw = parse_id(*id);
    if (!raw) return fail(code::invalid_field, std::string(field) + " must be a message id", field);
    return *raw;
  };
  if (q.after) {
    auto b = bound(q.after, "after");
    if (!b) return b.error();
    lower = std::max(lower, keys::successor(keys::history_key(conv, *b)));
  }
  if (q.before) {
    auto b = bound(q.before, "before");
    if (!b) return b.error();
    upper = std::min(upper, keys::history_key(conv, *b));
  }
  if (q.since_ms) lower = std::max(lower, keys::history_key(conv, keys::message_id_floor(*q.since_ms)));
  if (q.until_ms) upper = std::min(upper, keys::history_key(conv, keys::message_id_floor(*q.until_ms)));

  // A group's period bounds the walks, which load every message they pass: a member who
  // left is walked from the greatest id stored when they went (period_end_key), never past
  // the messages sent since, however many; before a period that hides earlier history the walks stop once they have
  // passed max_outside messages in a row from before it (ids are time-ordered, positions arrival-ordered: a message
  // from another region can come late with an older id, so the boundary in ids is not sharp). Without these, a late
  // joiner or a former member of a busy group made every request walk the whole group.
  if (period && !period->member() && period->left_at_ms() != 0) upper = std::min(upper, period_end_key(conv, *period));
  history_page page;
  std::int64_t now = now_ms();
  enum class seen { shown, not_shown, before_period };
  std::optional<client::message> visible_message;
  std::size_t unseen_bytes = 0;  // of the messages loaded and not shown, in a row
  auto look = [&](std::string_view key) {
    visible_message.reset();
    auto raw = m.db.get(cf::messages, std::string(keys::after_owner(key, conv)));
    auto sm = parse<records::stored_message>(raw);
    auto not_shown = [&](seen s) {
      unseen_bytes += raw ? raw->size() : 0;
      return s;
    };
    if (sm && period && sm->conversation_seq() <= period->visible_after()) return not_shown(seen::before_period);
    auto visible = sm ? m.visible(*sm, user, now) : std::nullopt;
    if (!visible || visible->conversation_id() != conv) return not_shown(seen::not_shown);  // never another's
    if (period && !in_period(*period, sm->conversation_seq())) return not_shown(seen::not_shown);
    visible_message = std::move(visible);
    return seen::shown;
  };
  // Passed: messages from before the period, in a row; messages not shown, of either kind,
  // in all (one budget for the page, not one per run between the messages it shows: a
  // page of 200 must not walk 200 runs of max_unseen). A page cut short so ends at the last
  // message it shows; has_more_* then say whether there are more.
  std::size_t outside = 0, unseen = 0;
  auto too_far = [&](seen s) {  // (called for messages not shown only)
    outside = s == seen::before_period ? outside + 1 : 0;
    return outside > max_outside || ++unseen > max_unseen || unseen_bytes > max_unseen_bytes;
  };
  std::size_t page_bytes = 0;
  auto collect = [&](std::string_view key, std::string_view) {
    auto s = look(key);
    if (s != seen::shown) return !too_far(s);
    outside = 0;
    page_bytes += detail::json_cost(*visible_message);
    page.messages.push_back(std::move(*visible_message));
    return page.messages.size() < q.limit && page_bytes < max_page_bytes;
  };
  if (lower < upper) {
    if (q.after) {
      m.db.scan(cf::history, lower, upper, collect);
    } else {
      m.db.scan_reverse(cf::history, lower, upper, collect);
      std::reverse(page.messages.begin(), page.messages.end());
    }
  }
  // has_more_before/after: whether the conversation holds a message the caller may see
  // older than the first returned (newer than the last), whatever the filters. An empty
  // page answers for the window's bounds. That is what a client pages with. Older ones
  // are looked for from the page down, so the walk meets the period's start last.
  auto any_shown = [&](std::string const& from, std::string const& to, bool down) {
    bool found = false;
    outside = unseen = unseen_bytes = 0;
    auto step = [&](std::string_view key, std::string_view) {
      auto s = look(key);
      found = s == seen::shown;
      return !found && !too_far(s);
    };
    if (from < to) down ? m.db.scan_reverse(cf::history, from, to, step) : m.db.scan(cf::history, from, to, step);
    return found;
  };
  std::string first =
      page.messages.empty() ? std::min(lower, upper) : keys::history_key(conv, *parse_id(page.messages.front().id()));
  std::string last = page.messages.empty()
                         ? std::max(lower, upper)
                         : keys::successor(keys::history_key(conv, *parse_id(page.messages.back().id())));
  std::string newest = keys::past_last_of(conv);
  if (period && !period->member() && period->left_at_ms() != 0) newest = period_end_key(conv, *period);
  page.has_more_before = any_shown(keys::first_of(conv), first, true);
  page.has_more_after = any_shown(last, newest, false);
  return page;
}

result<client::message> message_service::get(std::string const& user, std::string const& message_id) const {
  auto& m = *impl_;
  auto raw = parse_id(message_id);
  auto stored = raw ? m.load(*raw) : std::nullopt;
  auto visible = stored ? m.visible(*stored, user, now_ms()) : std::nullopt;
  if (!visible || !m.may_see(user, *stored)) return fail(code::message_not_found, "no message '" + message_id + "'");
  return *visible;
}

result<message_service::typing_target> message_service::typing_between(std::string const& from,
                                                                       std::string const& to) const {
  auto id = ids::parse_user_id(to, impl_->region);
  if (!id) return fail(code::invalid_field, "typing.to must be a user id", "to");
  auto conv = keys::direct_conversation_id(from, id->str());
  if (!impl_->member(from, conv)) return fail(code::conversation_not_found, "no conversation with " + id->str());
  return typing_target{id->str(), conv};
}

bool message_service::is_member(std::string const& user, std::string const& conv) const {
  return keys::is_group(conv) ? impl_->member_by_part(user, conv) : impl_->member(user, conv);
}

bool message_service::shares_presence(std::string const& a, std::string const& b) const {
  return impl_->shares_presence(a, b);
}

std::vector<std::string> message_service::contacts(std::string const& user) const {
  std::vector<std::string> out;
  auto owner = keys::contacts_owner(user);
  impl_->db.scan(cf::conversations, keys::first_of(owner), keys::past_last_of(owner),
                 [&](std::string_view key, std::string_view) {
                   auto peer = std::string(keys::after_owner(key, owner));
                   if (peer != user && service_detail::wrote_in(impl_->db, user, peer) &&
                       service_detail::wrote_in(impl_->db, peer, user))
                     out.push_back(std::move(peer));
                   return true;
                 });
  // Members of the user's groups too, where both have written.
  std::set<std::string> seen(out.begin(), out.end());
  auto wrote = [&](std::string const& conv) { return service_detail::wrote_in(impl_->db, user, conv); };
  impl_->for_each_group(
      user,
      [&](std::string const& conv, records::conversation_record const& c) {
        std::unordered_set<std::string_view> listed(c.members().begin(), c.members().end());
        auto writers = keys::group_writers_owner(conv);  // one scan, not a look-up per member
        impl_->db.scan(cf::conversations, keys::first_of(writers), keys::past_last_of(writers),
                       [&](std::string_view key, std::string_view) {
                         std::string member(keys::after_owner(key, writers));
                         if (member != user && !seen.count(member) && listed.count(member) &&
                             service_detail::gets_events(c, member))
                           out.push_back(*seen.insert(std::move(member)).first);
                         return true;
                       });
        return true;
      },
      wrote);  // both must have written in it: the user first, before the group is read
  return out;
}

}  // namespace petchat::messages
