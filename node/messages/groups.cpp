// Groups: creating them and changing their members, roles and settings. Every change is
// checked and made inside one write on the writer, against the group as committed before
// it, so changes (and sends: messages.cpp) are in one order; each is a conversation_change
// event in the mailbox of every member, the departing one included.
#include "base/format/format.hpp"
#include "node/async/async.hpp"
#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/service.hpp"
#include "node/messages/messages.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {
namespace {

constexpr std::size_t max_title_bytes = 128;
constexpr std::size_t max_description_bytes = 1024;
constexpr std::size_t max_members_per_request = 1000;

using impl = message_service::impl;

// What a change's write did.
struct change_state {
  std::vector<news> heads;
  std::optional<errors::failure> refused;
  std::vector<std::string> added;
  std::vector<member_failure> failed;
  std::string conversation;
};

std::optional<errors::failure> check_text(std::optional<std::string> const& v, char const* field, std::size_t min,
                                          std::size_t max) {
  if (!v) return std::nullopt;
  if (v->size() < min || v->size() > max || !format::utf8_length(*v))
    return fail(
        code::invalid_field,
        std::string(field) + " must be " + std::to_string(min) + " to " + std::to_string(max) + " bytes of UTF-8",
        field);
  return std::nullopt;
}

// Who may be added, worked out before the write: user ids of this region that exist.
// The rest fail here, each with its reason.
std::vector<std::string> candidates(impl const& m, std::vector<std::string> const& given,
                                    std::vector<member_failure>& failed) {
  std::vector<std::string> out;
  for (auto const& u : given) {
    auto id = ids::parse_user_id(u, m.region);
    if (!id) {
      failed.push_back({u, fail(code::user_not_found, "'" + u + "' is not a user id")});
    } else if (id->region != m.region) {
      if (m.regions && m.regions->is_remote(id->region))
        failed.push_back({id->str(), fail(code::remote_member_unsupported,
                                          "members of other regions are not supported in groups yet")});
      else
        failed.push_back({id->str(), fail(code::user_not_found, "region '" + id->region + "' is not federated")});
    } else if (!m.users.get_profile(id->name)) {
      failed.push_back({id->str(), fail(code::user_not_found, "no user '" + id->str() + "'")});
    } else if (std::find(out.begin(), out.end(), id->str()) == out.end()) {
      out.push_back(id->str());
    }
  }
  return out;
}

std::uint64_t group_count(store::rocks_batch& b, std::string const& user) {
  auto v = b.get(cf::conversations, keys::group_count_key(user));
  return v ? keys::from_be64(*v) : 0;
}
void add_group_count(store::rocks_batch& b, std::string const& user, int delta) {
  b.put(cf::conversations, keys::group_count_key(user), keys::be64(group_count(b, user) + std::uint64_t(delta)));
}

// `user` joins: the roster, their part (their period starts now, or at the start when the
// group shows its history), their group count.
void join(store::rocks_batch& b, std::string const& conv, records::conversation_record& c, std::string const& user,
          client::member_role role, std::int64_t now) {
  c.add_members(user);
  c.add_roles(role);
  auto messages = load_activity(b, conv).messages();
  auto p = load_participant(b, user, conv).value_or(records::participant_record{});
  p.set_member(true);
  p.set_visible_after(c.history_visible() ? 0 : messages);
  p.set_visible_until(0);
  p.set_read_seq(messages);
  p.set_own_after_read(0);
  p.set_joined_at_ms(now);
  p.set_left_at_ms(0);
  p.clear_last_message_id();
  put_participant(b, user, conv, p);
  add_group_count(b, user, 1);
}

// `user` goes: their period ends after the group's last message.
void depart(store::rocks_batch& b, std::string const& conv, records::conversation_record& c, std::string const& user) {
  int i = member_index(c, user);
  if (i < 0) return;
  c.mutable_members()->erase(c.mutable_members()->begin() + i);
  if (i < c.roles_size()) c.mutable_roles()->erase(c.mutable_roles()->begin() + i);
  if (auto p = load_participant(b, user, conv)) {
    auto activity = load_activity(b, conv);
    p->set_member(false);
    p->set_visible_until(activity.messages());
    p->set_left_at_ms(now_ms());
    p->set_last_message_id(activity.last_message_id());
    put_participant(b, user, conv, *p);
  }
  add_group_count(b, user, -1);
}

void set_role_at(records::conversation_record& c, std::string const& user, client::member_role role) {
  int i = member_index(c, user);
  while (c.roles_size() < c.members_size()) c.add_roles(client::MEMBER);
  if (i >= 0) c.set_roles(i, role);
}

// The next change: its version, and its event in the mailbox of every member (and of
// `also`, who just went).
void announce(impl const& m, store::rocks_batch& b, records::conversation_record& c, client::conversation_change ch,
              change_state& st, std::string const& also = {}) {
  c.set_version(c.version() + 1);
  ch.set_conversation_id(st.conversation);
  ch.set_version(c.version());
  ch.set_at_ms(now_ms());
  records::stored_event e;
  *e.mutable_conversation_change() = std::move(ch);
  for (auto const& member : c.members()) st.heads.push_back({member, m.append(b, member, e), e});
  if (!also.empty()) st.heads.push_back({also, m.append(b, also, e), e});
}

client::conversation_change change(client::change_kind kind, std::string const& by) {
  client::conversation_change ch;
  ch.set_kind(kind);
  ch.set_by(by);
  return ch;
}

// The group as committed, with `by` a current member, or why not.
std::optional<records::conversation_record> load_group(store::rocks_batch& b, std::string const& by, change_state& st) {
  auto c = parse<records::conversation_record>(b.get(cf::conversations, st.conversation));
  if (c && c->group() && member_index(*c, by) >= 0) return c;
  bool former = c && c->group() && load_participant(b, by, st.conversation);
  st.refused = former ? fail(code::not_a_member, "you are no longer a member of this conversation")
                      : fail(code::conversation_not_found, "no conversation '" + st.conversation + "' of yours");
  return std::nullopt;
}

// Adds each candidate who can be added, or says why not.
void add_each(impl const& m, store::rocks_batch& b, records::conversation_record& c,
              std::vector<std::string> const& users, change_state& st, std::int64_t now) {
  for (auto const& u : users) {
    if (member_index(c, u) >= 0) {
      st.failed.push_back({u, fail(code::already_member, u + " is a member already")});
    } else if (std::size_t(c.members_size()) >= m.options.max_group_members) {
      st.failed.push_back({u, fail(code::group_full, "the group has " + std::to_string(c.members_size()) +
                                                         " members, the most it may have")});
    } else if (group_count(b, u) >= m.options.max_groups_per_user) {
      st.failed.push_back({u, fail(code::too_many_groups, u + " is in " + std::to_string(group_count(b, u)) +
                                                              " groups, the most a user may be in")});
    } else {
      join(b, st.conversation, c, u, client::MEMBER, now);
      st.added.push_back(u);
    }
  }
}

// Runs a change's write; the answer is its failure, or nothing.
awaitable<std::optional<errors::failure>> run_change(impl& m, std::shared_ptr<change_state> st,
                                                     store::rocks_db::write_fn fn) {
  auto outcome = co_await async::write(m.db, std::move(fn));
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the change could not be stored");
  if (st->refused) co_return st->refused;
  m.after_commit(st->heads, false);
  co_return std::nullopt;
}

}  // namespace

awaitable<result<membership_result>> message_service::create_group(std::string owner, group_spec spec) {
  auto& m = *impl_;
  if (auto bad = check_text(spec.title, "title", 1, max_title_bytes)) co_return *bad;
  if (auto bad = check_text(spec.description, "description", 0, max_description_bytes)) co_return *bad;
  if (spec.members.size() > max_members_per_request)
    co_return fail(code::invalid_field, "at most 1000 members in one request", "members");
  if (spec.ttl_s > m.options.retention_s)
    co_return fail(code::invalid_field, "ttl_s is at most messages.retention_s", "ttl_s");
  auto st = std::make_shared<change_state>();
  auto users = candidates(m, spec.members, st->failed);
  std::erase(users, owner);
  st->conversation = keys::new_group_id();
  auto resolved = st->failed.size();
  store::rocks_db::write_fn fn = [&m, st, owner, spec, users, resolved](store::rocks_batch& b) {
    st->heads.clear();
    st->added.clear();
    st->failed.resize(resolved);
    if (group_count(b, owner) >= m.options.max_groups_per_user) {
      st->refused = fail(code::too_many_groups,
                         "you are in " + std::to_string(group_count(b, owner)) + " groups, the most a user may be in");
      return false;
    }
    std::int64_t now = now_ms();
    records::conversation_record c;
    c.set_group(true);
    c.set_title(spec.title);
    c.set_description(spec.description);
    c.set_ttl_s(spec.ttl_s);
    c.set_history_visible(spec.history_visible);
    c.set_created_at_ms(now);
    join(b, st->conversation, c, owner, client::OWNER, now);
    add_each(m, b, c, users, *st, now);
    auto ch = change(client::CREATED, owner);
    for (auto const& member : c.members()) ch.add_users(member);
    ch.set_title(c.title());
    ch.set_description(c.description());
    ch.set_ttl_s(c.ttl_s());
    ch.set_history_visible(c.history_visible());
    announce(m, b, c, std::move(ch), *st);
    records::conversation_activity activity;
    activity.set_last_at_ms(now);
    put_activity(b, st->conversation, activity);
    b.put(cf::conversations, st->conversation, c.SerializeAsString());
    return true;
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  auto view = conversation(owner, st->conversation);
  if (!view) co_return view.error();
  co_return membership_result{std::move(*view), st->added, st->failed};
}

awaitable<result<membership_result>> message_service::add_members(std::string by, std::string conv,
                                                                  std::vector<std::string> users) {
  auto& m = *impl_;
  if (users.empty()) co_return fail(code::missing_field, "members is required", "members");
  if (users.size() > max_members_per_request)
    co_return fail(code::invalid_field, "at most 1000 members in one request", "members");
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  auto valid = candidates(m, users, st->failed);
  auto resolved = st->failed.size();
  store::rocks_db::write_fn fn = [&m, st, by, valid, resolved](store::rocks_batch& b) {
    st->heads.clear();
    st->added.clear();
    st->failed.resize(resolved);
    auto c = load_group(b, by, *st);
    if (!c) return false;
    if (role_of(*c, by) == client::MEMBER) {
      st->refused = fail(code::forbidden_role, "only the owner and admins may add members");
      return false;
    }
    add_each(m, b, *c, valid, *st, now_ms());
    if (st->added.empty()) return false;
    auto ch = change(client::MEMBERS_ADDED, by);
    for (auto const& u : st->added) ch.add_users(u);
    announce(m, b, *c, std::move(ch), *st);
    b.put(cf::conversations, st->conversation, c->SerializeAsString());
    return true;
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  auto view = conversation(by, conv);
  if (!view) co_return view.error();
  co_return membership_result{std::move(*view), st->added, st->failed};
}

awaitable<errors::status> message_service::remove_member(std::string by, std::string conv, std::string user,
                                                         std::optional<std::string> successor) {
  auto& m = *impl_;
  auto target = ids::parse_user_id(user, m.region);
  if (!target) co_return fail(code::user_not_found, "'" + user + "' is not a user id");
  std::optional<std::string> next;
  if (successor) {
    auto id = ids::parse_user_id(*successor, m.region);
    if (!id) co_return fail(code::invalid_field, "successor must be a member's user id", "successor");
    next = id->str();
  }
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  store::rocks_db::write_fn fn = [&m, st, by, who = target->str(), next](store::rocks_batch& b) {
    st->heads.clear();
    auto c = load_group(b, by, *st);
    if (!c) return false;
    if (member_index(*c, who) < 0) {
      st->refused = fail(code::user_not_found, who + " is not a member");
      return false;
    }
    if (who != by) {  // removing someone: the owner anyone, an admin members only
      auto mine = role_of(*c, by), theirs = role_of(*c, who);
      if (mine == client::MEMBER || theirs == client::OWNER || (mine == client::ADMIN && theirs != client::MEMBER)) {
        st->refused = fail(code::forbidden_role, "your role may not remove this member");
        return false;
      }
      depart(b, st->conversation, *c, who);
      auto ch = change(client::MEMBER_REMOVED, by);
      ch.add_users(who);
      announce(m, b, *c, std::move(ch), *st, who);
    } else {
      if (role_of(*c, by) == client::OWNER && c->members_size() > 1) {  // hands ownership on first
        if (!next) {
          st->refused = fail(code::owner_must_hand_over, "the owner names a successor (?successor=) to leave");
          return false;
        }
        if (*next == by || member_index(*c, *next) < 0) {
          st->refused = fail(code::invalid_field, "the successor must be another member", "successor");
          return false;
        }
        for (auto [u, role] : {std::pair{*next, client::OWNER}, std::pair{by, client::ADMIN}}) {
          set_role_at(*c, u, role);
          auto ch = change(client::ROLE_CHANGED, by);
          ch.add_users(u);
          ch.set_role(role);
          announce(m, b, *c, std::move(ch), *st);
        }
      }
      depart(b, st->conversation, *c, by);
      auto ch = change(client::MEMBER_LEFT, by);
      ch.add_users(by);
      announce(m, b, *c, std::move(ch), *st, by);
    }
    b.put(cf::conversations, st->conversation, c->SerializeAsString());
    return true;
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  co_return errors::ok();
}

awaitable<result<conversation_view>> message_service::set_role(std::string by, std::string conv, std::string user,
                                                               client::member_role role) {
  auto& m = *impl_;
  auto target = ids::parse_user_id(user, m.region);
  if (!target) co_return fail(code::user_not_found, "'" + user + "' is not a user id");
  if (role != client::OWNER && role != client::ADMIN && role != client::MEMBER)
    co_return fail(code::invalid_field, "role must be owner, admin or member", "role");
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  store::rocks_db::write_fn fn = [&m, st, by, who = target->str(), role](store::rocks_batch& b) {
    st->heads.clear();
    auto c = load_group(b, by, *st);
    if (!c) return false;
    if (role_of(*c, by) != client::OWNER) {
      st->refused = fail(code::forbidden_role, "only the owner may change roles");
      return false;
    }
    if (member_index(*c, who) < 0) {
      st->refused = fail(code::user_not_found, who + " is not a member");
      return false;
    }
    if (who == by) {
      st->refused = fail(code::invalid_field, "the owner hands ownership on by making another member owner", "role");
      return false;
    }
    if (role_of(*c, who) == role) return false;  // nothing changes
    std::vector<std::pair<std::string, client::member_role>> changes{{who, role}};
    if (role == client::OWNER) changes.emplace_back(by, client::ADMIN);
    for (auto const& [u, r] : changes) {
      set_role_at(*c, u, r);
      auto ch = change(client::ROLE_CHANGED, by);
      ch.add_users(u);
      ch.set_role(r);
      announce(m, b, *c, std::move(ch), *st);
    }
    b.put(cf::conversations, st->conversation, c->SerializeAsString());
    return true;
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  co_return conversation(by, conv);
}

awaitable<result<conversation_view>> message_service::update_conversation(std::string by, std::string conv,
                                                                          conversation_patch patch) {
  auto& m = *impl_;
  if (auto bad = check_text(patch.title, "title", 1, max_title_bytes)) co_return *bad;
  if (auto bad = check_text(patch.description, "description", 0, max_description_bytes)) co_return *bad;
  if (patch.ttl_s && *patch.ttl_s > m.options.retention_s)
    co_return fail(code::invalid_field, "ttl_s is at most messages.retention_s", "ttl_s");
  bool group = keys::is_group(conv);
  if (!group && (patch.title || patch.description || patch.history_visible))
    co_return fail(code::invalid_field, "a direct conversation has no title, description or history setting", "title");
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  store::rocks_db::write_fn fn = [&m, st, by, patch, group](store::rocks_batch& b) {
    st->heads.clear();
    auto c = group ? load_group(b, by, *st)
                   : parse<records::conversation_record>(b.get(cf::conversations, st->conversation));
    if (!c || (!group && member_index(*c, by) < 0)) {
      if (!st->refused)
        st->refused = fail(code::conversation_not_found, "no conversation '" + st->conversation + "' of yours");
      return false;
    }
    bool details =
        (patch.title && *patch.title != c->title()) || (patch.description && *patch.description != c->description());
    bool settings = (patch.ttl_s && *patch.ttl_s != c->ttl_s()) ||
                    (patch.history_visible && *patch.history_visible != c->history_visible());
    if (group && (details || settings) && role_of(*c, by) == client::MEMBER) {
      st->refused = fail(code::forbidden_role, "only the owner and admins may change the group");
      return false;
    }
    if (patch.title) c->set_title(*patch.title);
    if (patch.description) c->set_description(*patch.description);
    if (patch.ttl_s) c->set_ttl_s(*patch.ttl_s);
    if (patch.history_visible) c->set_history_visible(*patch.history_visible);
    if (group && details) {
      auto ch = change(client::DETAILS_CHANGED, by);
      ch.set_title(c->title());
      ch.set_description(c->description());
      announce(m, b, *c, std::move(ch), *st);
    }
    if (group && settings) {
      auto ch = change(client::SETTINGS_CHANGED, by);
      ch.set_ttl_s(c->ttl_s());
      ch.set_history_visible(c->history_visible());
      announce(m, b, *c, std::move(ch), *st);
    }
    if (details || settings) b.put(cf::conversations, st->conversation, c->SerializeAsString());
    if (patch.muted) {
      auto p = group ? load_participant(b, by, st->conversation).value_or(records::participant_record{})
                     : direct_participant(b, by, st->conversation, now_ms());
      p.set_muted(*patch.muted);
      put_participant(b, by, st->conversation, p);
    }
    return true;
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  co_return conversation(by, conv);
}

}  // namespace petchat::messages
