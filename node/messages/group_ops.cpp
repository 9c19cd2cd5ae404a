// Group changes inside a write (detail/group_ops.hpp): the roster, the members' periods,
// the change events, and at home the group_state every other region concerned applies.
#include "node/messages/detail/group_ops.hpp"

#include <set>
#include <unordered_set>

#include "base/format/format.hpp"

namespace petchat::messages::service_detail {
namespace {

using impl = message_service::impl;

// `user` joins the roster; a local user's period starts.
void join(impl const& m, store::rocks_batch& b, std::string const& conv, records::conversation_record& c,
          std::string const& user, client::member_role role, std::int64_t now) {
  c.add_members(user);
  c.add_roles(role);
  if (m.is_local(user))
    start_period(b, conv, user, c.history_visible(), now);
  else
    note_remote_member(b, conv, user, c.history_visible() ? 0 : load_activity(b, conv).messages());
}

// `user` leaves the roster; a local user's period ends.
void depart(impl const& m, store::rocks_batch& b, std::string const& conv, records::conversation_record& c,
            std::string const& user, change_state& st) {
  int i = member_index(c, user);
  if (i < 0) return;
  c.mutable_members()->erase(c.mutable_members()->begin() + i);
  if (i < c.roles_size()) c.mutable_roles()->erase(c.mutable_roles()->begin() + i);
  if (m.is_local(user))
    end_period(b, m.db, conv, c, user, now_ms(), std::int64_t(m.options.retention_s) * 1000);
  else
    note_remote_departure(b, conv, user, c.version() + 1, now_ms(),  // the version of the change that follows
                          std::int64_t(m.options.retention_s) * 1000);
  st.departed.push_back(user);
}

void set_role_at(records::conversation_record& c, std::string const& user, client::member_role role) {
  int i = member_index(c, user);
  while (c.roles_size() < c.members_size()) c.add_roles(client::MEMBER);
  if (i >= 0) c.set_roles(i, role);
}

// The next change: its version, and its event to every local member (and `also`, just gone).
void announce(impl const& m, store::rocks_batch& b, records::conversation_record& c, client::conversation_change ch,
              change_state& st, std::string const& also = {}) {
  c.set_version(c.version() + 1);
  ch.set_conversation_id(st.conversation);
  ch.set_version(c.version());
  ch.set_at_ms(now_ms());
  auto users = c.members();
  if (!also.empty()) users.Add()->assign(also);
  post_change(m, b, ch, users, st.heads);
  st.changes.push_back(std::move(ch));
}

client::conversation_change change(client::change_kind kind, std::string const& by) {
  client::conversation_change ch;
  ch.set_kind(kind);
  ch.set_by(by);
  return ch;
}

// At home, after a change: the group's record, and its group_state to every other region
// with members now or that lost one.
void commit_change(impl const& m, store::rocks_batch& b, records::conversation_record const& c, change_state& st) {
  b.put(cf::conversations, st.conversation, c.SerializeAsString());
  std::set<std::string> regions;
  for (auto const& u : c.members()) regions.insert(std::string(ids::region_of(u)));
  for (auto const& u : st.departed) regions.insert(std::string(ids::region_of(u)));
  regions.erase(m.region);
  if (regions.empty()) return;
  auto body = state_of(m, st.conversation, c);
  for (auto const& ch : st.changes) *body.mutable_group_state()->add_changes() = ch;
  auto first = first_member_regions(c, st);
  auto full = with_writers(b, c, st, body, !first.empty());
  for (auto const& region : regions) m.to_outbox(b, region, first.count(region) ? full : body);
  st.queued = true;
}

// `by` gives `who` a role (ROLE_CHANGED); making them owner hands ownership on, so `by`
// becomes an admin in a second ROLE_CHANGED.
void give_role(impl const& m, store::rocks_batch& b, records::conversation_record& c, change_state& st,
               std::string const& by, std::string const& who, client::member_role role) {
  auto one = [&](std::string const& u, client::member_role r) {
    set_role_at(c, u, r);
    auto ch = change(client::ROLE_CHANGED, by);
    ch.add_users(u);
    ch.set_role(r);
    announce(m, b, c, std::move(ch), st);
  };
  one(who, role);
  if (role == client::OWNER) one(by, client::ADMIN);
}

// `who` goes (MEMBER_REMOVED by `by`, or MEMBER_LEFT), told of it last; the change committed.
void leave(impl const& m, store::rocks_batch& b, records::conversation_record& c, change_state& st,
           std::string const& by, std::string const& who, client::change_kind kind, std::string const& reason = {}) {
  depart(m, b, st.conversation, c, who, st);
  auto ch = change(kind, by);
  ch.add_users(who);
  ch.set_reason(reason);
  announce(m, b, c, std::move(ch), st, who);
  commit_change(m, b, c, st);
}

// The group as committed, with `by` a current member, or why not.
std::optional<records::conversation_record> load_group(store::rocks_batch& b, std::string const& by, change_state& st) {
  auto c = load_conversation(b, st.conversation);
  if (c && c->group() && member_index(*c, by) >= 0) return c;
  bool former = c && c->group() && load_participant(b, by, st.conversation);
  st.refused = former ? fail(code::not_a_member, "you are no longer a member of this conversation")
                      : fail(code::conversation_not_found, "no conversation '" + st.conversation + "' of yours");
  return std::nullopt;
}

bool refuse(change_state& st, errors::failure f) {
  st.refused = std::move(f);
  return false;
}

std::optional<errors::failure> check_text(std::optional<std::string> const& v, char const* field, std::size_t min,
                                          std::size_t max, bool multiline, bool from_home) {
  if (!v) return std::nullopt;
  bool plain = from_home ? format::utf8_length(*v).has_value()
                         : format::plain_text_length(*v, multiline) && (min == 0 || format::shows_something(*v));
  if (v->size() < min || v->size() > max || !plain)
    return fail(code::invalid_field,
                std::string(field) + " must be " + std::to_string(min) + " to " + std::to_string(max) +
                    " bytes of UTF-8 without control characters or direction overrides, not only spaces",
                field);
  return std::nullopt;
}

constexpr std::size_t max_title_bytes = 128;
constexpr std::size_t max_description_bytes = 1024;

}  // namespace

std::optional<errors::failure> check_patch(impl const& m, conversation_patch const& patch, bool from_home) {
  if (auto bad = check_text(patch.title, "title", 1, max_title_bytes, false, from_home)) return bad;
  if (auto bad = check_text(patch.description, "description", 0, max_description_bytes, true, from_home)) return bad;
  if (patch.ttl_s && *patch.ttl_s > m.options.retention_s)
    return fail(code::invalid_field, "ttl_s is at most messages.retention_s", "ttl_s");
  return std::nullopt;
}

std::optional<std::string> home_of(records::conversation_record const& c, std::string const& local_region) {
  if (!c.group()) return std::nullopt;
  return c.home_region().empty() ? local_region : c.home_region();
}

std::vector<std::string> candidates(impl const& m, std::vector<std::string> const& given,
                                    std::vector<member_failure>& failed) {
  std::vector<std::string> out;
  for (auto const& u : given) {
    auto id = ids::parse_user_id(u, m.region);
    if (!id) {
      failed.push_back({u, fail(code::user_not_found, "'" + u + "' is not a user id")});
      continue;
    }
    auto full = id->str();
    if (id->region != m.region && !(m.regions && m.regions->is_remote(id->region)))
      failed.push_back({full, fail(code::user_not_found, "region '" + id->region + "' is not federated")});
    else if (id->region == m.region && !m.users.get_profile(id->name))
      failed.push_back({full, fail(code::user_not_found, "no user '" + full + "'")});
    else if (std::find(out.begin(), out.end(), full) == out.end())
      out.push_back(full);
  }
  return out;
}

bool op_create(impl const& m, store::rocks_batch& b, change_state& st, std::string const& owner, group_spec const& spec,
               std::vector<std::string> const& users) {
  if (!has_account(m, owner)) return refuse(st, fail(code::user_not_found, "your account was deleted"));
  if (group_count(b, owner) >= m.options.max_groups_per_user)
    return refuse(st, fail(code::too_many_groups, "you are in " + std::to_string(group_count(b, owner)) +
                                                      " groups, the most a user may be in"));
  std::int64_t now = now_ms();
  records::conversation_record c;
  c.set_group(true);
  c.set_home_region(m.region);
  c.set_title(spec.title);
  c.set_description(spec.description);
  c.set_ttl_s(spec.ttl_s);
  c.set_history_visible(spec.history_visible);
  c.set_created_at_ms(now);
  join(m, b, st.conversation, c, owner, client::OWNER, now);
  for (auto const& u : users) {
    if (u == owner || member_index(c, u) >= 0) continue;
    if (std::size_t(c.members_size()) >= m.options.max_group_members) {
      st.failed.push_back({u, fail(code::group_full, "the group has " + std::to_string(c.members_size()) +
                                                         " members, the most it may have")});
    } else if (m.is_local(u) && group_count(b, u) >= m.options.max_groups_per_user) {
      st.failed.push_back({u, fail(code::too_many_groups, u + " is in too many groups")});
    } else if (auto refused = refuse_join(m, b, owner, u)) {
      st.failed.push_back({u, std::move(*refused)});
    } else {
      join(m, b, st.conversation, c, u, client::MEMBER, now);
      st.added.push_back(u);
      if (m.is_local(u)) st.joins_taken.push_back(u);  // (refuse_join counted it)
    }
  }
  auto ch = change(client::CREATED, owner);
  *ch.mutable_users() = c.members();
  ch.set_title(c.title());
  ch.set_description(c.description());
  ch.set_ttl_s(c.ttl_s());
  ch.set_history_visible(c.history_visible());
  announce(m, b, c, std::move(ch), st);
  records::conversation_activity activity;
  activity.set_last_at_ms(now);
  put_activity(b, st.conversation, activity);
  commit_change(m, b, c, st);
  return true;
}

bool op_add(impl const& m, store::rocks_batch& b, change_state& st, std::string const& by,
            std::vector<std::string> const& users) {
  auto c = load_group(b, by, st);
  if (!c) return false;
  if (role_of(*c, by) == client::MEMBER)
    return refuse(st, fail(code::forbidden_role, "only the owner and admins may add members"));
  std::int64_t now = now_ms();
  for (auto const& u : users) {
    if (member_index(*c, u) >= 0) {
      st.failed.push_back({u, fail(code::already_member, u + " is a member already")});
    } else if (std::size_t(c->members_size()) >= m.options.max_group_members) {
      st.failed.push_back({u, fail(code::group_full, "the group has " + std::to_string(c->members_size()) +
                                                         " members, the most it may have")});
    } else if (m.is_local(u) && group_count(b, u) >= m.options.max_groups_per_user) {
      st.failed.push_back({u, fail(code::too_many_groups, u + " is in " + std::to_string(group_count(b, u)) +
                                                              " groups, the most a user may be in")});
    } else if (auto refused = refuse_join(m, b, by, u)) {
      st.failed.push_back({u, std::move(*refused)});
    } else {
      join(m, b, st.conversation, *c, u, client::MEMBER, now);
      st.added.push_back(u);
      if (m.is_local(u)) st.joins_taken.push_back(u);  // (refuse_join counted it)
    }
  }
  if (st.added.empty()) return false;
  auto ch = change(client::MEMBERS_ADDED, by);
  for (auto const& u : st.added) ch.add_users(u);
  announce(m, b, *c, std::move(ch), st);
  commit_change(m, b, *c, st);
  return true;
}

bool op_remove(impl const& m, store::rocks_batch& b, change_state& st, std::string const& by, std::string const& who,
               std::optional<std::string> const& successor) {
  auto c = load_group(b, by, st);
  if (!c) return false;
  if (member_index(*c, who) < 0) return refuse(st, fail(code::user_not_found, who + " is not a member"));
  if (who != by) {  // removing someone: the owner anyone, an admin members only
    auto mine = role_of(*c, by), theirs = role_of(*c, who);
    if (mine == client::MEMBER || theirs == client::OWNER || (mine == client::ADMIN && theirs != client::MEMBER))
      return refuse(st, fail(code::forbidden_role, "your role may not remove this member"));
    leave(m, b, *c, st, by, who, client::MEMBER_REMOVED);
    return true;
  }
  if (auto refused = owner_may_leave(*c, by, successor)) return refuse(st, std::move(*refused));
  if (role_of(*c, by) == client::OWNER && c->members_size() > 1)  // hands ownership on first
    give_role(m, b, *c, st, by, *successor, client::OWNER);
  leave(m, b, *c, st, by, by, client::MEMBER_LEFT);
  return true;
}

bool op_drop_no_account(impl const& m, store::rocks_batch& b, change_state& st, std::vector<std::string> const& who,
                        std::string const& reason) {
  auto c = parse<records::conversation_record>(b.get(cf::conversations, st.conversation));
  if (!c || !c->group()) return false;
  std::vector<std::string> gone;
  for (auto const& u : who)
    if (member_index(*c, u) >= 0 && std::find(gone.begin(), gone.end(), u) == gone.end()) gone.push_back(u);
  if (gone.empty()) return false;  // gone already
  auto going = [&](std::string const& u) { return std::find(gone.begin(), gone.end(), u) != gone.end(); };
  for (auto const& u : gone) {
    if (role_of(*c, u) != client::OWNER) continue;
    auto next = heir(*c, going);
    if (next.empty()) break;
    set_role_at(*c, next, client::OWNER);
    auto ch = change(client::ROLE_CHANGED, "");
    ch.add_users(next);
    ch.set_role(client::OWNER);
    ch.set_reason(reason);
    announce(m, b, *c, std::move(ch), st);
  }
  // One change for them all: a state naming many made-up names of a region is one removal
  // there, not one change (and one state to every region) per name.
  for (auto const& u : gone) depart(m, b, st.conversation, *c, u, st);
  auto ch = change(client::MEMBER_REMOVED, "");
  for (auto const& u : gone) ch.add_users(u);
  ch.set_reason(reason);
  announce(m, b, *c, std::move(ch), st, gone.size() == 1 ? gone.front() : std::string());
  commit_change(m, b, *c, st);
  return true;
}

bool op_role(impl const& m, store::rocks_batch& b, change_state& st, std::string const& by, std::string const& who,
             client::member_role role) {
  if (role != client::MEMBER && role != client::ADMIN && role != client::OWNER)  // also other regions' requests
    return refuse(st, fail(code::invalid_field, "role must be member, admin or owner", "role"));
  auto c = load_group(b, by, st);
  if (!c) return false;
  if (role_of(*c, by) != client::OWNER)
    return refuse(st, fail(code::forbidden_role, "only the owner may change roles"));
  if (member_index(*c, who) < 0) return refuse(st, fail(code::user_not_found, who + " is not a member"));
  if (who == by)
    return refuse(st, fail(code::invalid_field, "the owner hands ownership on by making another member owner", "role"));
  if (role_of(*c, who) == role) return false;  // nothing changes
  give_role(m, b, *c, st, by, who, role);
  commit_change(m, b, *c, st);
  return true;
}

bool op_update(impl const& m, store::rocks_batch& b, change_state& st, std::string const& by,
               conversation_patch const& patch) {
  if (auto bad = check_patch(m, patch)) return refuse(st, *bad);  // also for other regions' requests
  auto c = load_group(b, by, st);
  if (!c) return false;
  bool details =
      (patch.title && *patch.title != c->title()) || (patch.description && *patch.description != c->description());
  bool settings = (patch.ttl_s && *patch.ttl_s != c->ttl_s()) ||
                  (patch.history_visible && *patch.history_visible != c->history_visible());
  // The role first: a member's patch is refused even when it would change nothing.
  if (role_of(*c, by) == client::MEMBER)
    return refuse(st, fail(code::forbidden_role, "only the owner and admins may change the group"));
  if (!details && !settings) return false;
  if (patch.title) c->set_title(*patch.title);
  if (patch.description) c->set_description(*patch.description);
  if (patch.ttl_s) c->set_ttl_s(*patch.ttl_s);
  if (patch.history_visible) c->set_history_visible(*patch.history_visible);
  if (details) {
    auto ch = change(client::DETAILS_CHANGED, by);
    ch.set_title(c->title());
    ch.set_description(c->description());
    announce(m, b, *c, std::move(ch), st);
  }
  if (settings) {
    auto ch = change(client::SETTINGS_CHANGED, by);
    ch.set_ttl_s(c->ttl_s());
    ch.set_history_visible(c->history_visible());
    announce(m, b, *c, std::move(ch), st);
  }
  commit_change(m, b, *c, st);
  return true;
}

std::optional<federation::reject_reason> apply_group_state(impl const& m, store::rocks_batch& b,
                                                           federation::group_state const& gs, change_state& st) {
  using federation::reject_reason;
  st.conversation = gs.conversation_id();
  if (!keys::well_formed_group_id(gs.conversation_id()) || gs.members_size() != gs.roles_size() ||
      check_patch(m, {gs.title(), gs.description(), std::nullopt, std::nullopt, std::nullopt}, true))
    return reject_reason::malformed;
  auto replica = parse<records::conversation_record>(b.get(cf::conversations, gs.conversation_id()));
  if (replica && home_of(*replica, m.region) != gs.home_region()) return reject_reason::foreign_user;
  // A group whose id names another home: a region claiming it where no replica is yet.
  if (!keys::group_id_allows_home(gs.conversation_id(), gs.home_region())) return reject_reason::foreign_user;
  if (replica && replica->version() >= gs.version()) return std::nullopt;  // an older state: dropped
  if (!plausible_state(gs, replica ? replica->version() : 0) || !fields_within_limits(m, gs))
    return reject_reason::malformed;
  // A region keeps replicas of the groups its users are in: an honest home never sends a
  // first state that names none of them (a hostile one could fill this store with groups).
  auto local = [&m](std::string const& u) { return m.is_local(u); };
  if (!replica && std::none_of(gs.members().begin(), gs.members().end(), local)) return reject_reason::foreign_user;
  records::conversation_record c;
  c.set_group(true);
  c.set_home_region(gs.home_region());
  *c.mutable_members() = gs.members();
  *c.mutable_roles() = gs.roles();
  c.set_title(gs.title());
  c.set_description(gs.description());
  c.set_ttl_s(gs.ttl_s());
  c.set_history_visible(gs.history_visible());
  c.set_version(gs.version());
  c.set_created_at_ms(gs.created_at_ms());
  std::int64_t now = now_ms();
  // Who gets the events: the members, and the local ones who went; never a name of this
  // region with no account.
  google::protobuf::RepeatedPtrField<std::string> told;
  // Sets, not the rosters' linear look-ups: a state of 100,000 members is 10^5 steps, not 10^10.
  std::unordered_set<std::string_view> now_in(c.members().begin(), c.members().end()), was_in, none_before;
  if (replica) {
    was_in.insert(replica->members().begin(), replica->members().end());
    none_before.insert(replica->no_account().begin(), replica->no_account().end());
    // A name that gets nothing here (no account then, or a leave made here) that this state
    // adds is judged anew, as a join: home cannot add a name it lists, so it made the leave
    // (or removed the name) first, maybe in a state this region never got (a lane that
    // skipped to its floor). A hostile home adding it at once is an add, as any other:
    // counted and checked as a join.
    for (auto const& ch : gs.changes())
      if (ch.kind() == client::MEMBERS_ADDED)
        for (auto const& u : ch.users())
          if (none_before.erase(u)) was_in.erase(u);
  }
  auto joins = judge_local_members(m, b, gs, was_in, none_before);
  st.joins_taken.insert(st.joins_taken.end(), joins.joins_taken.begin(), joins.joins_taken.end());
  // No roster for a group none of this region's users can be in (made-up names of this
  // region would otherwise let a hostile home store rosters here without end): only its home
  // and version, so that its messages up to there are dropped, not parked for members to come.
  auto stubs = keys::stub_count_key(gs.home_region());
  if (is_stub(replica) && !joins.any) {
    if (!replica && read_count(b, cf::conversations, stubs) >= max_stubs_per_home) return reject_reason::foreign_user;
    if (!replica) add_count(b, cf::conversations, stubs, 1);
    ask_to_remove(m, b, gs, joins, st);
    auto stub = replica.value_or(records::conversation_record{});  // (an ended group keeps its settings)
    stub.set_group(true);
    stub.set_home_region(gs.home_region());
    stub.set_version(gs.version());
    b.put(cf::conversations, st.conversation, stub.SerializeAsString());
    return std::nullopt;
  }
  // A stub counts against its home's limit and begins now, as a new replica. A group that
  // ended here (its members all gone: no roster, its activity kept) was never counted and
  // goes on from its positions: begun anew, it would number its messages from 1 again and
  // a joiner's period would take in the messages of its earlier life still stored.
  bool counted_stub = replica && is_stub(replica) && !b.get(cf::conversations, keys::activity_key(st.conversation));
  if (counted_stub) add_count(b, cf::conversations, stubs, -1);
  if (counted_stub) replica.reset();
  auto gone = removals(gs);
  if (replica) {
    for (auto const& u : replica->members()) {
      if (now_in.count(u)) continue;
      if (!m.is_local(u))
        note_remote_departure(b, st.conversation, u, gone.count(u) ? gone[u] : replica->version() + 1, now,
                              std::int64_t(m.options.retention_s) * 1000);
      else if (!none_before.count(u) &&
               end_period(b, m.db, st.conversation, *replica, u, now, std::int64_t(m.options.retention_s) * 1000))
        *told.Add() = u;
    }
  } else {
    records::conversation_activity activity;
    activity.set_last_at_ms(now);
    put_activity(b, st.conversation, activity);
  }
  auto const joined_after = c.history_visible() ? 0 : load_activity(b, st.conversation).messages();
  for (auto const& u : c.members())
    if (!m.is_local(u)) note_remote_member(b, st.conversation, u, joined_after);
  for (int i = 0; i < c.members_size(); ++i) {
    auto const& u = c.members(i);
    bool joining = m.is_local(u) && !was_in.count(u);
    if (!joins.kept[static_cast<std::size_t>(i)]) {
      c.add_no_account(u);
      continue;
    }
    if (joining) {
      start_period(b, st.conversation, u, c.history_visible(), now);
    } else if (none_before.count(u)) {
      c.add_no_account(u);
      continue;
    }
    *told.Add() = u;
  }
  ask_to_remove(m, b, gs, joins, st);
  for (auto const& ch : gs.changes()) post_change(m, b, ch, told, st.heads);
  // Home speaks for its own users only: that a user of a third region wrote, this region
  // learns from that region's own message (a hostile home naming such a user a member and a
  // writer would otherwise show their presence to whoever writes here). Presence is then
  // seen at the next change or report.
  for (auto const& u : gs.writers())
    if (ids::region_of(u) == gs.home_region() && !m.is_local(u) && now_in.count(u))
      note_writer(b, st.conversation, u, gs.version());
  std::sort(c.mutable_no_account()->begin(), c.mutable_no_account()->end());  // has_no_account
  c.set_no_account_sorted(true);
  end_replica_if_none_here(m, b, st.conversation, c);
  b.put(cf::conversations, st.conversation, c.SerializeAsString());
  return std::nullopt;
}

}  // namespace petchat::messages::service_detail
