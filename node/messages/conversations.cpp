// The conversation list, one conversation's details and a message's receipts: reads of
// committed state, on the caller's thread (see messages.hpp for each call's contract).
// Unread counts come from counters (node/messages/detail/conversations.hpp), so a list
// costs a few point reads per conversation, never a count of messages.
#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/json_cost.hpp"
#include "node/messages/detail/service.hpp"
#include "node/messages/messages.hpp"

namespace petchat::messages {
namespace {

using impl = message_service::impl;

struct entry {
  std::string conv;
  records::participant_record part;
  std::int64_t activity_ms = 0;
};

// The order of the list: newest activity first, then by id.
bool before(entry const& a, entry const& b) {
  return a.activity_ms != b.activity_ms ? a.activity_ms > b.activity_ms : a.conv > b.conv;
}

std::string cursor_of(entry const& e) {
  return std::to_string(e.activity_ms) + "." + e.conv;
}

std::optional<entry> parse_cursor(std::string const& c) {
  auto dot = c.find('.');
  if (dot == std::string::npos || dot == 0) return std::nullopt;
  entry e;
  auto r = std::from_chars(c.data(), c.data() + dot, e.activity_ms);
  if (r.ec != std::errc() || r.ptr != c.data() + dot) return std::nullopt;
  e.conv = c.substr(dot + 1);
  return e;
}

std::optional<records::participant_record> participant(impl const& m, std::string const& user,
                                                       std::string const& conv) {
  return parse<records::participant_record>(m.db.get(cf::conversations, keys::participant_key(user, conv)));
}

records::conversation_activity activity(impl const& m, std::string const& conv) {
  return parse<records::conversation_activity>(m.db.get(cf::conversations, keys::activity_key(conv)))
      .value_or(records::conversation_activity{});
}

// The summary of `conv` for `user` (with the members when `details`).
conversation_view view_of(impl const& m, std::string const& user, std::string const& conv,
                          records::conversation_record const& c, records::participant_record const& p, bool details) {
  conversation_view v;
  v.id = conv;
  v.group = c.group();
  auto act = activity(m, conv);
  v.member =
      c.group() ? acts_as_member(c, user) : true;  // (a name a replica's roster lists but this region refused is not)
  v.member_count = static_cast<std::size_t>(c.members_size());
  v.title = c.title();
  v.description = c.description();
  // A former member sees the group as it was when they left, and not who is in it now.
  bool former = c.group() && !v.member && !p.title_when_left().empty();
  if (former) {
    v.member_count = p.members_when_left();
    v.title = p.title_when_left();
    v.description.clear();
  }
  if (!c.group()) {
    for (auto const& other : c.members())
      if (other != user) v.peer = other;
    if (v.peer.empty()) v.peer = user;
    v.title = v.peer;
  }
  v.ttl_s = c.ttl_s();
  v.history_visible = c.history_visible();
  v.version = c.version();
  v.created_at_ms = c.created_at_ms();
  v.muted = p.muted();
  v.last_activity_ms =
      p.left_at_ms() ? p.left_at_ms() : std::max({act.last_at_ms(), p.joined_at_ms(), c.created_at_ms()});
  auto const& last = p.left_at_ms() ? p.last_message_id() : act.last_message_id();
  std::uint64_t seen = p.read_seq() + p.own_after_read();
  v.unread = v.member && act.messages() > seen ? act.messages() - seen : 0;
  auto mark = m.db.get(cf::state, keys::read_key(conv, user));
  if (mark) v.read_mark = print_id(*mark);
  if (!last.empty()) {
    // The newest message the user may see at or before `last`, passing over those deleted,
    // hidden for them or expired (at most 16 looked at). None after the read mark: nothing
    // is unread, whatever gone messages the count holds, unless a message is stored past
    // `last` (another region's id ahead of the clock, which never becomes the last one).
    constexpr int most = 16;
    int looked = 0;
    bool cut = false;
    std::string found;
    auto first = keys::history_key(conv, "");
    auto end = keys::history_key(conv, last) + '\0';
    auto now = now_ms();
    m.db.scan_reverse(cf::history, first, end, [&](std::string_view key, std::string_view) {
      if (looked++ == most) return !(cut = true);
      std::string id(key.substr(first.size()));
      auto sm = m.load(id);
      if (!sm) return true;
      if (c.group() && !in_period(p, sm->conversation_seq()))
        return sm->conversation_seq() > p.visible_after();  // before their period: so is all before it
      if (auto shown = m.visible(*sm, user, now)) {
        v.last_message = std::move(*shown);
        found = std::move(id);
        return false;
      }
      return true;
    });
    // Only when it could clear a count: the common list costs no extra seek.
    auto stored_past_last = [&] {
      bool later = false;
      m.db.scan(cf::history, end, conv + '\x01', [&](std::string_view, std::string_view) {
        later = true;  // one is enough
        return false;
      });
      return later;
    };
    if (v.unread > 0 && (v.last_message ? mark && found <= *mark : !cut) && !stored_past_last()) v.unread = 0;
  }
  for (int i = 0; i < (former ? 0 : c.members_size()); ++i) {
    auto role = role_at(c, i);  // by position: a look-up per member made a page quadratic
    if (role == client::OWNER) v.owner = c.members(i);
    if (details) v.members.push_back({c.members(i), role, !has_no_account(c, c.members(i))});
  }
  return v;
}

}  // namespace

result<conversation_page> message_service::conversations(std::string const& user, std::size_t limit,
                                                         std::optional<std::string> const& cursor) const {
  auto& m = *impl_;
  std::optional<entry> after;
  if (cursor) {
    after = parse_cursor(*cursor);
    if (!after) return fail(code::invalid_field, "before must be a cursor from an earlier page", "before");
  }
  // Every conversation of the user's: their parts, and direct conversations from before
  // the list existed (the contact index), which have none yet.
  std::vector<entry> all;
  auto owner = keys::participants_owner(user);
  m.db.scan(cf::conversations, keys::first_of(owner), keys::past_last_of(owner),
            [&](std::string_view key, std::string_view value) {
              entry e;
              e.conv = std::string(keys::after_owner(key, owner));
              e.part.ParseFromArray(value.data(), static_cast<int>(value.size()));
              all.push_back(std::move(e));
              return true;
            });
  auto contacts = keys::contacts_owner(user);
  m.db.scan(cf::conversations, keys::first_of(contacts), keys::past_last_of(contacts),
            [&](std::string_view, std::string_view conv) {
              if (!m.db.get(cf::conversations, keys::participant_key(user, std::string(conv))))
                all.push_back({std::string(conv), records::participant_record{}, 0});
              return true;
            });
  for (auto& e : all) {
    auto act = activity(m, e.conv);
    e.activity_ms = e.part.left_at_ms() ? e.part.left_at_ms() : std::max(act.last_at_ms(), e.part.joined_at_ms());
    if (act.last_at_ms() == 0 && e.part.joined_at_ms() == 0)  // from before the list: its last message
      m.db.scan_reverse(cf::history, keys::first_of(e.conv), keys::past_last_of(e.conv),
                        [&](std::string_view key, std::string_view) {
                          e.activity_ms = keys::message_id_time_ms(keys::after_owner(key, e.conv));
                          return false;
                        });
  }
  std::sort(all.begin(), all.end(), before);
  auto it = all.begin();
  if (after) it = std::upper_bound(all.begin(), all.end(), *after, before);
  conversation_page page;
  std::size_t page_bytes = 0;  // a summary's own fields: 512 bytes at most, about
  for (; it != all.end() && page.conversations.size() < limit && page_bytes < max_page_bytes; ++it) {
    auto c = m.conversation(it->conv);
    if (!c) continue;
    auto& v = page.conversations.emplace_back(view_of(m, user, it->conv, *c, it->part, false));
    v.last_activity_ms = it->activity_ms;
    page_bytes += 512 + v.title.size() * 6 + (v.last_message ? detail::json_cost(*v.last_message) : 0);
  }
  // A next page only if something would be on it (the records left may all be gone).
  while (it != all.end() && !page.conversations.empty() && !m.conversation(it->conv)) ++it;
  if (it != all.end() && !page.conversations.empty()) page.next = cursor_of(*std::prev(it));
  return page;
}

result<conversation_view> message_service::conversation(std::string const& user, std::string const& conv) const {
  auto& m = *impl_;
  auto c = m.conversation(conv);
  auto p = c ? participant(m, user, conv) : std::nullopt;
  if (c && !c->group() && member_index(*c, user) >= 0 && !p) p = records::participant_record{};
  if (!c || !p) return fail(code::conversation_not_found, "no conversation '" + conv + "' of yours");
  if (c->group() && !acts_as_member(*c, user))
    return fail(code::not_a_member, "you are no longer a member of this conversation");
  return view_of(m, user, conv, *c, *p, true);
}

result<message_receipts> message_service::receipts(std::string const& user, std::string const& message_id) const {
  auto& m = *impl_;
  auto raw = parse_id(message_id);
  auto sm = raw ? m.load(*raw) : std::nullopt;
  if (!sm || !m.visible(*sm, user, now_ms()) || !m.may_see(user, *sm))
    return fail(code::message_not_found, "no message '" + message_id + "'");
  if (sm->message().from() != user) return fail(code::not_sender, "only the sender sees a message's receipts");
  message_receipts out;
  out.message_id = sm->message().id();
  out.conversation_id = sm->message().conversation_id();
  if (!keys::is_group(out.conversation_id)) {
    out.recipients = 1;
    out.members.push_back({sm->message().to(), sm->delivered_at_ms(), sm->read_at_ms()});
    out.delivered_count = sm->delivered_at_ms() != 0;
    out.read_count = sm->read_at_ms() != 0;
    return out;
  }
  auto fan =
      parse<records::fanout_record>(m.db.get(cf::receipts, keys::fanout_key(*raw))).value_or(records::fanout_record{});
  auto counts = parse<records::receipt_counts>(m.db.get(cf::receipts, keys::receipt_counts_key(*raw)))
                    .value_or(records::receipt_counts{});
  out.recipients = static_cast<std::uint32_t>(fan.recipients_size());
  out.delivered_count = counts.delivered();
  out.read_count = counts.read();
  // Deliveries by acknowledgement are in delivered_batch records (message_records.proto).
  std::unordered_map<std::string, std::int64_t> acked;
  for (std::uint32_t n = 1; n <= counts.delivered_batches(); ++n)
    if (auto batch = parse<records::delivered_batch>(m.db.get(cf::receipts, keys::delivered_batch_key(*raw, n))))
      for (auto const& member : batch->members()) acked.emplace(member, batch->at_ms());
  for (auto const& member : fan.recipients()) {
    auto r = parse<records::receipt_record>(m.db.get(cf::receipts, keys::receipt_key(*raw, member)))
                 .value_or(records::receipt_record{});
    auto delivered = r.delivered_at_ms();
    if (auto it = acked.find(member); delivered == 0 && it != acked.end()) delivered = it->second;
    out.members.push_back({member, delivered, r.read_at_ms()});
  }
  return out;
}

result<std::vector<std::string>> message_service::group_peers(std::string const& user, std::string const& conv) const {
  auto c = impl_->conversation(conv);
  if (!c || !c->group() || !acts_as_member(*c, user))
    return fail(code::conversation_not_found,
                "no group '" + conv + "' of yours (in a direct conversation, name the other member in 'to')");
  std::vector<std::string> out;
  for (auto const& member : c->members())
    if (member != user && gets_events(*c, member)) out.push_back(member);
  return out;
}

}  // namespace petchat::messages
