// Groups: creating them and changing their members, roles and settings. Every change is
// checked and made inside one write on the writer, against the group as committed before
// it, so changes (and sends: messages.cpp) are in one order; each is a conversation_change
// event in the mailbox of every member, the departing one included.
#include "base/format/format.hpp"
#include "node/async/async.hpp"
#include "node/messages/detail/group_ops.hpp"
#include "node/messages/messages.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {
namespace {

constexpr std::size_t max_members_per_request = 1000;

using impl = message_service::impl;

// Runs a change's write; the answer is its failure, or nothing.
awaitable<std::optional<errors::failure>> run_change(impl& m, std::shared_ptr<change_state> st,
                                                     store::rocks_db::write_fn fn) {
  auto outcome = co_await async::write(m.db, std::move(fn));
  // The joins an add counted, given back if it made nobody a member (max_joins_per_hour).
  if (outcome != store::write_outcome::committed) change_state::give_back_joins(m, st->joins_taken);
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the change could not be stored");
  if (st->refused) co_return st->refused;
  m.after_commit(st->heads, st->queued);
  co_return std::nullopt;
}

// The home region of group `c` when it is another region's (its changes are asked for
// there), else nullopt.
std::optional<std::string> remote_home(impl const& m, std::optional<records::conversation_record> const& c) {
  auto home = c ? home_of(*c, m.region) : std::nullopt;
  if (!home || *home == m.region) return std::nullopt;
  return home;
}

// The conversation as `view` read it, or if it could not be read, only its id.
conversation_view or_bare(result<conversation_view> view, std::string const& conv) {
  if (view) return std::move(*view);
  conversation_view bare;
  bare.id = conv;
  bare.group = true;
  bare.member = false;
  bare.bare = true;
  return bare;
}

// The answer to a change asked of another region's home, once the request is queued: the
// conversation as it is here, or if it cannot be read now (the caller left meanwhile), only
// its id, never an error (the client would ask again, and home would be asked twice).

result<conversation_view> queued_view(result<conversation_view> read, std::string const& conv,
                                      std::string const& request_id) {
  auto view = or_bare(std::move(read), conv);
  view.queued = true;
  view.request_id = request_id;
  return view;
}

// A change of a group homed in another region, asked for by `request.by()`: checked as far
// as this region's replica allows (a member, with at least the role `needed`; for an add,
// users who are members already are left out as `st->failed`), then queued durably to the
// home region, which makes it or not (docs/FEDERATION.md). `st->queued` is false when an
// add had nobody left to ask for.
awaitable<std::optional<errors::failure>> queue_request(impl& m, std::shared_ptr<change_state> st, std::string home,
                                                        federation::group_request request, client::member_role needed) {
  st->conversation = request.conversation_id();
  st->request_id = keys::new_request_id();
  request.set_request_id(st->request_id);
  auto resolved = st->failed.size();
  store::rocks_db::write_fn fn = [&m, st, home, request, needed, resolved](store::rocks_batch& b) {
    st->restart(resolved);
    auto c = load_conversation(b, st->conversation);
    bool leaving = request.request() == federation::group_request::REMOVE && request.users_size() == 1 &&
                   request.users(0) == request.by();
    // One who left here and whom home still lists (it has not made the leave, or lost it)
    // may ask again: nothing changes here.
    bool left_here = leaving && c && member_index(*c, request.by()) >= 0 && has_no_account(*c, request.by());
    if (!left_here && (!c || !acts_as_member(*c, request.by()))) {  // as for a group of this region's (load_group)
      bool former = c && c->group() && load_participant(b, request.by(), st->conversation);
      st->refused = former ? fail(code::not_a_member, "you are no longer a member of this conversation")
                           : fail(code::conversation_not_found, "no conversation '" + st->conversation + "' of yours");
      return false;
    }
    if (!left_here && role_of(*c, request.by()) < needed) {
      st->refused = fail(code::forbidden_role, "your role in this group does not allow that");
      return false;
    }
    federation::body body;
    auto& ask = *body.mutable_group_request() = request;
    if (request.request() == federation::group_request::ADD) {
      ask.clear_users();
      for (auto const& u : request.users())
        if (member_index(*c, u) >= 0)
          st->failed.push_back({u, fail(code::already_member, u + " is a member already")});
        else
          ask.add_users(u);
      if (ask.users_size() == 0) return false;
    }
    // Leaving is done here now, not once home answers (home may be away for days, or
    // never answer): the period ends, presence shared through the group with it.
    if (leaving && !left_here) {
      std::optional<std::string> successor;
      if (!request.successor().empty()) successor = request.successor();
      if (auto refused = owner_may_leave(*c, request.by(), successor)) {
        st->refused = std::move(refused);
        return false;
      }
      leave_here(m, b, *c, request.by(), *st);
    }
    m.to_outbox(b, home, std::move(body));
    st->queued = true;
    return true;
  };
  co_return co_await run_change(m, st, std::move(fn));
}

federation::group_request request_of(std::string const& conv, std::string const& by,
                                     federation::group_request::kind kind) {
  federation::group_request r;
  r.set_conversation_id(conv);
  r.set_by(by);
  r.set_request(kind);
  return r;
}

}  // namespace

awaitable<result<membership_result>> message_service::create_group(std::string owner, group_spec spec) {
  auto& m = *impl_;
  // A create asked again with its client_id (its answer was lost) answers the group it made
  // and makes none, whatever its other fields now are (also when two copies raced: looked at
  // again in the write). It costs a send, not a create. The group as the creator sees it
  // now; only its id if they have left it since.
  auto repeated_create = [this](std::string const& owner, std::string const& conv) -> result<membership_result> {
    membership_result r{or_bare(conversation(owner, conv), conv), {}, {}};
    r.repeated = true;
    return r;
  };
  auto made_before = std::make_shared<std::optional<std::string>>();
  if (!spec.client_id.empty()) *made_before = m.db.get(cf::idempotency, keys::group_create_key(owner, spec.client_id));
  if (*made_before) {
    if (auto limited = m.limiter.charge(owner)) co_return *limited;
    co_return repeated_create(owner, **made_before);
  }
  if (auto bad = check_patch(m, {spec.title, spec.description, spec.ttl_s, std::nullopt, std::nullopt})) co_return *bad;
  if (spec.members.size() > max_members_per_request)
    co_return fail(code::invalid_field, "at most 1000 members in one request", "members");
  if (auto limited = m.limiter.charge(owner)) co_return *limited;
  // A group left at once costs its creator nothing more: what they created, each left
  // group's record kept for the retention period (forget_former_member), is capped here.
  if (auto wait = m.creates.take(owner, now_ms()); wait > 0)
    co_return errors::rate_limited("more than " + std::to_string(m.options.max_groups_created_per_day) +
                                       " groups created a day (messages.max_groups_created_per_day)",
                                   wait);
  auto st = std::make_shared<change_state>();
  auto users = candidates(m, spec.members, st->failed);
  st->conversation = keys::new_group_id(m.region);
  auto resolved = st->failed.size();
  store::rocks_db::write_fn fn = [&m, st, owner, spec, users, resolved, made_before](store::rocks_batch& b) {
    st->restart(resolved);
    if (!spec.client_id.empty()) {
      auto key = keys::group_create_key(owner, spec.client_id);
      if ((*made_before = b.get(cf::idempotency, key))) return false;
      b.put(cf::idempotency, key, st->conversation);
      expire_later(b, now_ms() + std::int64_t(m.options.retention_s) * 1000, keys::expiring::idempotency, key);
    }
    return op_create(m, b, *st, owner, spec, users);
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  if (*made_before) {
    m.creates.give_back(owner);  // (the send it took stays: a repeat costs one)
    co_return repeated_create(owner, **made_before);
  }
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
  if (auto limited = m.limiter.charge(by)) co_return *limited;
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  auto valid = candidates(m, users, st->failed);
  if (auto home = remote_home(m, m.conversation(conv))) {
    auto request = request_of(conv, by, federation::group_request::ADD);
    for (auto const& u : valid) request.add_users(u);
    if (auto failed = co_await queue_request(m, st, *home, std::move(request), client::ADMIN)) co_return *failed;
    if (!st->queued) {  // nobody to ask for: answered as home answers an add that added nobody
      auto view = conversation(by, conv);
      if (!view) co_return view.error();
      co_return membership_result{std::move(*view), {}, st->failed};
    }
    membership_result queued{{}, {}, st->failed};
    queued.queued = true;
    queued.request_id = st->request_id;
    co_return queued;
  }
  auto resolved = st->failed.size();
  store::rocks_db::write_fn fn = [&m, st, by, valid, resolved](store::rocks_batch& b) {
    st->restart(resolved);
    return op_add(m, b, *st, by, valid);
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  auto view = conversation(by, conv);
  if (!view) co_return view.error();
  co_return membership_result{std::move(*view), st->added, st->failed};
}

awaitable<result<std::optional<std::string>>> message_service::remove_member(std::string by, std::string conv,
                                                                             std::string user,
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
  auto committed = m.conversation(conv);
  auto home = remote_home(m, committed);
  // Leaving costs nothing here, but a leave sent to another region's home is an outbox
  // entry until it answers: counted like any send there (no flood while it is away). And
  // a leave of a group one is not in (any id), or one the write will refuse (an owner's
  // without a successor who is a member), is a write every send waits behind: counted.
  bool refusable = committed && owner_may_leave(*committed, by, next);
  if (target->str() != by || home || !keys::is_group(conv) || !m.member(by, conv) || refusable)
    if (auto limited = m.limiter.charge(by)) co_return *limited;
  if (home) {
    auto request = request_of(conv, by, federation::group_request::REMOVE);
    request.add_users(target->str());
    if (next) request.set_successor(*next);
    auto needed = target->str() == by ? client::MEMBER : client::ADMIN;
    auto ask = std::make_shared<change_state>();
    if (auto failed = co_await queue_request(m, ask, *home, std::move(request), needed)) co_return *failed;
    co_return ask->request_id;
  }
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  store::rocks_db::write_fn fn = [&m, st, by, who = target->str(), next](store::rocks_batch& b) {
    st->restart(0);
    return op_remove(m, b, *st, by, who, next);
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  co_return std::nullopt;
}

awaitable<result<conversation_view>> message_service::set_role(std::string by, std::string conv, std::string user,
                                                               client::member_role role) {
  auto& m = *impl_;
  auto target = ids::parse_user_id(user, m.region);
  if (!target) co_return fail(code::user_not_found, "'" + user + "' is not a user id");
  if (role != client::OWNER && role != client::ADMIN && role != client::MEMBER)
    co_return fail(code::invalid_field, "role must be owner, admin or member", "role");
  if (auto limited = m.limiter.charge(by)) co_return *limited;
  if (auto home = remote_home(m, m.conversation(conv))) {
    auto request = request_of(conv, by, federation::group_request::ROLE);
    request.add_users(target->str());
    request.set_role(role);
    auto ask = std::make_shared<change_state>();
    if (auto failed = co_await queue_request(m, ask, *home, std::move(request), client::OWNER)) co_return *failed;
    co_return queued_view(conversation(by, conv), conv, ask->request_id);
  }
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  store::rocks_db::write_fn fn = [&m, st, by, who = target->str(), role](store::rocks_batch& b) {
    st->restart(0);
    return op_role(m, b, *st, by, who, role);
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  co_return conversation(by, conv);
}

awaitable<result<conversation_view>> message_service::update_conversation(std::string by, std::string conv,
                                                                          conversation_patch patch) {
  auto& m = *impl_;
  if (auto bad = check_patch(m, patch)) co_return *bad;
  bool group = keys::is_group(conv);
  if (!group && (patch.title || patch.description || patch.history_visible))
    co_return fail(code::invalid_field, "a direct conversation has no title, description or history setting",
                   patch.title         ? "title"
                   : patch.description ? "description"
                                       : "history_visible");
  // Each change is a write the sends wait behind, a mute's too: one of the user's sends.
  if (patch.title || patch.description || patch.ttl_s || patch.history_visible || patch.muted)
    if (auto limited = m.limiter.charge(by)) co_return *limited;
  bool queued = false;
  std::string request_id;
  if (auto home = remote_home(m, m.conversation(conv));
      home && (patch.title || patch.description || patch.ttl_s || patch.history_visible)) {
    auto request = request_of(conv, by, federation::group_request::UPDATE);
    if (patch.title) request.set_title(*patch.title);
    if (patch.description) request.set_description(*patch.description);
    if (patch.ttl_s) request.set_ttl_s(*patch.ttl_s);
    if (patch.history_visible) request.set_history_visible(*patch.history_visible);
    auto ask = std::make_shared<change_state>();
    if (auto failed = co_await queue_request(m, ask, *home, std::move(request), client::ADMIN)) co_return *failed;
    request_id = ask->request_id;
    patch.title = patch.description = std::nullopt;
    patch.ttl_s = std::nullopt;
    patch.history_visible = std::nullopt;
    queued = true;
  }
  // Nothing left to change here (an empty patch, or all of it asked of the home): no write,
  // only the answer (which refuses one who is not a member, as the write would).
  auto answer = [&]() -> result<conversation_view> {
    if (queued) return queued_view(conversation(by, conv), conv, request_id);
    return conversation(by, conv);
  };
  if (!patch.title && !patch.description && !patch.ttl_s && !patch.history_visible && !patch.muted) co_return answer();
  auto st = std::make_shared<change_state>();
  st->conversation = conv;
  store::rocks_db::write_fn fn = [&m, st, by, patch, group](store::rocks_batch& b) {
    st->restart(0);
    bool wrote = false;
    if (group && (patch.title || patch.description || patch.ttl_s || patch.history_visible)) {
      wrote = op_update(m, b, *st, by, patch);
      if (st->refused) return false;
    } else if (!group) {
      auto c = load_conversation(b, st->conversation);
      if (!c || member_index(*c, by) < 0) {
        st->refused = fail(code::conversation_not_found, "no conversation '" + st->conversation + "' of yours");
        return false;
      }
      if (patch.ttl_s && *patch.ttl_s != c->ttl_s()) {
        c->set_ttl_s(*patch.ttl_s);
        b.put(cf::conversations, st->conversation, c->SerializeAsString());
        // Both are told (what they send expires by it from now on): one member must not
        // switch disappearing messages off, or lengthen them, unseen by the other.
        client::conversation_change ch;
        ch.set_kind(client::SETTINGS_CHANGED);
        ch.set_by(by);
        ch.set_conversation_id(st->conversation);
        ch.set_ttl_s(*patch.ttl_s);
        ch.set_at_ms(now_ms());
        google::protobuf::RepeatedPtrField<std::string> told;  // (not an account deleted since)
        for (auto const& u : c->members())
          if (has_account(m, u)) *told.Add() = u;
        post_change(m, b, ch, told, st->heads);
        wrote = true;
      }
    }
    if (patch.muted) {
      auto p =
          group ? load_participant(b, by, st->conversation) : direct_participant(b, by, st->conversation, now_ms());
      if (!p) {
        st->refused = fail(code::conversation_not_found, "no conversation '" + st->conversation + "' of yours");
        return false;
      }
      if (group && !p->member()) {  // the part a former member keeps is not theirs to change
        st->refused = fail(code::not_a_member, "you are no longer a member of this conversation");
        return false;
      }
      if (p->muted() != *patch.muted) {  // the same again writes nothing
        p->set_muted(*patch.muted);
        put_participant(b, by, st->conversation, *p);
        wrote = true;
      }
    }
    return wrote;
  };
  if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  co_return answer();
}

awaitable<result<std::size_t>> message_service::account_deleted(std::string user) {
  auto& m = *impl_;
  // A group write that saw the account before its deletion was committed (op_create and
  // op_add look inside the write) is in a batch no later than this empty one: once it is
  // done, the scan below sees what that write did.
  store::rocks_db::write_fn barrier = [](store::rocks_batch&) { return false; };
  co_await async::write(m.db, std::move(barrier));
  std::vector<std::string> groups;
  auto owner = keys::participants_owner(user);
  m.db.scan(cf::conversations, keys::first_of(owner), keys::past_last_of(owner),
            [&](std::string_view key, std::string_view value) {
              std::string conv(keys::after_owner(key, owner));
              records::participant_record p;
              if (keys::is_group(conv) && p.ParseFromArray(value.data(), static_cast<int>(value.size())) && p.member())
                groups.push_back(std::move(conv));
              return true;
            });
  for (auto const& conv : groups) {
    auto st = std::make_shared<change_state>();
    st->conversation = conv;
    store::rocks_db::write_fn fn = [&m, st, user](store::rocks_batch& b) {
      st->restart(0);
      auto c = parse<records::conversation_record>(b.get(cf::conversations, st->conversation));
      if (!c || !c->group() || member_index(*c, user) < 0) return false;
      auto home = home_of(*c, m.region);
      if (!home || *home == m.region)
        return op_drop_no_account(m, b, *st, {user}, std::string(errors::name(code::user_not_found)));
      // Home removes the name, as it does a name its region has no account of; the state
      // it sends back ends the period here.
      auto body = federation::body();
      *body.mutable_group_request() = request_of(st->conversation, user, federation::group_request::NO_ACCOUNT);
      body.mutable_group_request()->add_users(user);
      m.to_outbox(b, *home, std::move(body));
      st->queued = true;
      return true;
    };
    if (auto failed = co_await run_change(m, st, std::move(fn))) co_return *failed;
  }
  // Its endpoints, keys and settings last: a group message written meanwhile may have
  // noted a push for it.
  auto pushed = co_await remove_user_push(user);
  if (!pushed) co_return pushed.error();
  co_return *pushed;
}

}  // namespace petchat::messages
