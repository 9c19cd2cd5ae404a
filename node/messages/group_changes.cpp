// A group change's event to the members' mailboxes, and a member region's request that home
// remove names it has no account of (detail/group_ops.hpp).
#include <algorithm>

#include "node/messages/detail/group_ops.hpp"

namespace petchat::messages::service_detail {

using impl = message_service::impl;

// A change event to the mailboxes of the local `users`. Told to more than one, it is stored
// once (keys::shared_change_key, expiring with the entries) and each entry points to it: a
// change listing 1,000 members was 20 KB in each of 1,000 mailboxes. Live streams get the
// whole event (`heads`).
void post_change(impl const& m, store::rocks_batch& b, client::conversation_change const& ch,
                 google::protobuf::RepeatedPtrField<std::string> const& users, std::vector<news>& heads) {
  records::stored_event e;
  *e.mutable_conversation_change() = ch;
  e.mutable_conversation_change()->DiscardUnknownFields();  // a home's extra fields are not stored
  auto locals = std::count_if(users.begin(), users.end(), [&](std::string const& u) { return m.is_local(u); });
  records::stored_event ref;
  for (auto const& u : users) {
    if (!m.is_local(u)) continue;
    if (locals < 2) {
      heads.push_back({u, m.append(b, u, e), e});
      continue;
    }
    if (ref.conversation_change_ref().empty()) {
      auto key = keys::shared_change_key(u, m.head(b, u) + 1);
      b.put(cf::conversations, key, e.conversation_change().SerializeAsString());
      ref.set_conversation_change_ref(key);
    }
    heads.push_back({u, m.append(b, u, ref), e});
  }
  // A second after the last entry pointing to it (each expires at the retention from its
  // append, just made), so that none is read without it.
  if (!ref.conversation_change_ref().empty())
    expire_later(b, now_ms() + std::int64_t(m.options.retention_s) * 1000 + 1000, keys::expiring::shared_change,
                 ref.conversation_change_ref());
}

// Members a group names who cannot be ones here (no account, or too many groups, one
// request per reason): home is asked to remove them (docs/FEDERATION.md), by the state that
// first names them, all in one request (by every state meanwhile when this region keeps no
// roster of the group: a stub remembers no names).
void ask_to_remove(impl const& m, store::rocks_batch& b, federation::group_state const& gs,
                   std::vector<std::string> const& users, change_state& st, std::string const& reason) {
  for (std::size_t from = 0; from < users.size(); from += max_no_account_names) {
    federation::body out;
    auto& r = *out.mutable_group_request();
    r.set_reason(reason);
    r.set_conversation_id(gs.conversation_id());
    r.set_by(users[from]);
    r.set_request(federation::group_request::NO_ACCOUNT);
    for (auto i = from; i < std::min(users.size(), from + max_no_account_names); ++i) r.add_users(users[i]);
    m.to_outbox(b, gs.home_region(), std::move(out));
    st.queued = true;
  }
}

namespace {

// Who added `user` as far as this region believes the home: never the user themselves, and
// a user of this region only if they were a member before this state (their add went from
// here, through home); a home could otherwise name any contact of theirs as the adder, and
// the user's choice to take adds only from people they wrote to would be void.
std::string believed_adder(impl const& m, federation::group_state const& gs,
                           std::unordered_set<std::string_view> const& was_in, std::string by,
                           std::string const& user) {
  if (by == user || (m.is_local(by) && !was_in.count(by))) return {};
  if (!m.is_local(by) && ids::region_of(by) != gs.home_region() &&
      std::find(gs.members().begin(), gs.members().end(), by) == gs.members().end())
    return {};
  return by;
}

}  // namespace

local_joins judge_local_members(impl const& m, store::rocks_batch& b, federation::group_state const& gs,
                                std::unordered_set<std::string_view> const& was_in,
                                std::unordered_set<std::string_view> const& none_before) {
  local_joins out;
  out.kept.assign(static_cast<std::size_t>(gs.members_size()), 1);
  std::unordered_map<std::string_view, std::string_view> adders;  // adder_of's
  for (int i = 0; i < gs.members_size(); ++i) {
    auto const& u = gs.members(i);
    if (!m.is_local(u)) continue;
    if (was_in.count(u)) {
      out.any |= !none_before.count(u);
      continue;
    }
    bool none = !m.users.get_profile(ids::parse_user_id(u, m.region).value_or(ids::user_id{}).name);
    bool too_many = !none && group_count(b, u) >= m.options.max_groups_per_user;
    bool refused = !none && !too_many && adds_only_from_contacts(m, u) &&
                   !wrote_to(b, u, believed_adder(m, gs, was_in, adder_of(gs, adders, u), u));
    // Added to groups too often lately (messages.max_joins_per_hour), as an add here would be.
    bool too_often = !none && !too_many && !refused && m.joins.take(u, now_ms()) > 0;
    if (!none && !too_many && !refused && !too_often) out.joins_taken.push_back(u);
    if (none || too_many || refused || too_often) {
      (too_many ? out.over_limit : refused ? out.restricted : too_often ? out.too_often : out.no_account).push_back(u);
      out.kept[static_cast<std::size_t>(i)] = 0;
    } else {
      out.any = true;
    }
  }
  return out;
}

void ask_to_remove(impl const& m, store::rocks_batch& b, federation::group_state const& gs, local_joins const& j,
                   change_state& st) {
  ask_to_remove(m, b, gs, j.no_account, st, "");
  ask_to_remove(m, b, gs, j.over_limit, st, std::string(errors::name(errors::code::too_many_groups)));
  ask_to_remove(m, b, gs, j.restricted, st, std::string(errors::name(errors::code::group_adds_restricted)));
  ask_to_remove(m, b, gs, j.too_often, st, std::string(errors::name(errors::code::rate_limited)));
}

std::optional<errors::failure> owner_may_leave(records::conversation_record const& c, std::string const& by,
                                               std::optional<std::string> const& successor) {
  if (role_of(c, by) != client::OWNER || c.members_size() <= 1) return std::nullopt;
  if (!successor) return fail(code::owner_must_hand_over, "the owner names a successor (?successor=) to leave");
  if (*successor == by || member_index(c, *successor) < 0 || has_no_account(c, *successor))
    return fail(code::invalid_field, "the successor must be another member", "successor");
  return std::nullopt;
}

void leave_here(impl const& m, store::rocks_batch& b, records::conversation_record& c, std::string const& user,
                change_state& st) {
  auto now = now_ms();
  forget_writer(b, st.conversation, user);  // (also for a member with no part: from before parts were kept)
  end_period(b, m.db, st.conversation, c, user, now, std::int64_t(m.options.retention_s) * 1000);
  c.add_no_account(user);
  std::sort(c.mutable_no_account()->begin(), c.mutable_no_account()->end());  // has_no_account
  c.set_no_account_sorted(true);
  b.put(cf::conversations, st.conversation, c.SerializeAsString());
  // Their own: numbered after the last change this region has of home's (the replica's
  // version stays home's), which is the next one unless home made others meanwhile.
  client::conversation_change ch;
  ch.set_kind(client::MEMBER_LEFT);
  ch.set_by(user);
  ch.add_users(user);
  ch.set_conversation_id(st.conversation);
  ch.set_version(c.version() + 1);
  ch.set_at_ms(now);
  google::protobuf::RepeatedPtrField<std::string> told;
  *told.Add() = user;
  post_change(m, b, ch, told, st.heads);
}

// Who added `user` in the changes a state carries (CREATED or MEMBERS_ADDED naming them),
// or empty if none says (a state that skipped its changes: the adder is not known). The
// map of those changes is made once per state, when first asked.
std::string adder_of(federation::group_state const& gs, std::unordered_map<std::string_view, std::string_view>& adders,
                     std::string const& user) {
  if (adders.empty())
    for (auto const& ch : gs.changes())
      if (ch.kind() == client::CREATED || ch.kind() == client::MEMBERS_ADDED)
        for (auto const& u : ch.users()) adders[u] = ch.by();
  auto it = adders.find(user);
  return it == adders.end() ? std::string() : std::string(it->second);
}

}  // namespace petchat::messages::service_detail
