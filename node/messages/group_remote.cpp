// A group across regions, the parts that concern another region: at home, a member
// region's request (run_request); in a member region, a group message from another region
// checked against the replica, and parked until the replica reaches the version it was
// sent at (docs/FEDERATION.md, "Groups across regions").
#include <algorithm>
#include <set>
#include <unordered_set>
#include "node/log/log.hpp"

#include "node/messages/detail/group_ops.hpp"
#include "node/messages/detail/lanes.hpp"

namespace petchat::messages::service_detail {

bool has_account(message_service::impl const& m, std::string const& user) {
  return !m.is_local(user) || m.users.get_profile(user.substr(0, user.find('@')));
}

bool adds_only_from_contacts(message_service::impl const& m, std::string const& user) {
  if (!m.is_local(user)) return false;
  auto p = m.users.get_profile(user.substr(0, user.find('@')));
  return p && p->group_adds_contacts_only;
}

bool wrote_to(store::rocks_batch& b, std::string const& user, std::string const& by) {
  return user == by || (!by.empty() && b.get(cf::conversations, keys::wrote_key(user, by)).has_value());
}

bool accepts_adds_from(message_service::impl const& m, store::rocks_batch& b, std::string const& user,
                       std::string const& by) {
  return user == by || !adds_only_from_contacts(m, user) || wrote_to(b, user, by);
}

std::optional<errors::failure> refuse_join(message_service::impl const& m, store::rocks_batch& b, std::string const& by,
                                           std::string const& user) {
  if (!has_account(m, user)) return fail(code::user_not_found, "no user '" + user + "'");
  if (!accepts_adds_from(m, b, user, by))
    return fail(code::group_adds_restricted, user + " may be added to groups only by people they have written to");
  if (user != by && m.is_local(user) && m.joins.take(user, now_ms()) > 0)
    return fail(code::rate_limited, user + " was added to groups too often lately");
  return std::nullopt;
}

void run_request(message_service::impl const& m, store::rocks_batch& b, records::conversation_record const& c,
                 federation::group_request const& r, change_state& change) {
  // Run once: a requester's region restored from a backup sends again what home had not
  // confirmed then, and running it again would undo what came after it (a member removed,
  // added again since, removed once more). Remembered for the retention period.
  std::optional<std::string> seen;
  if (!r.request_id().empty() && r.request_id().size() <= 64) {
    seen = keys::group_request_key(r.by(), r.request_id());
    if (b.get(cf::idempotency, *seen)) return;
  }
  // Charged at home (each was charged to its user in their region already): to the
  // requester, messages.max_per_second a second with bursts of 20 seconds' worth (a backlog
  // after a partition), and to their region, ten times that (a region can name any number
  // of requesters). Each is an event in every member's mailbox and a state to every region,
  // and a region passing its users' requests on unchecked would have home make them at any
  // rate. Not a leave (nobody is held in a group), nor NO_ACCOUNT. A refused one is not
  // remembered as run; the charge of one that changes nothing, or whose write does not
  // commit, is given back.
  bool leave = r.request() == federation::group_request::REMOVE && r.users_size() == 1 && r.users(0) == r.by();
  bool uncharged = leave || r.request() == federation::group_request::NO_ACCOUNT;
  // Uncharged, so refused at once (and not remembered as run) unless one of the names is in
  // the roster (not their parts here: members of other regions who joined before parts were
  // kept have none): else a region could have home store a key of any made-up name's
  // "leave" at any rate.
  if (uncharged) {
    bool named =
        std::any_of(r.users().begin(), r.users().end(), [&](std::string const& u) { return member_index(c, u) >= 0; });
    if (!named) {
      change.refused = fail(code::not_a_member, r.by() + " is not a member of " + r.conversation_id());
      return;
    }
  }
  if (!uncharged) {
    auto region = std::string(ids::region_of(r.by()));
    auto key = region + '\0' + r.by();
    auto now = now_ms();
    auto wait_ms = m.remote_requests.take(key, now);
    if (wait_ms == 0) {
      wait_ms = m.region_requests.take(region, now);
      if (wait_ms != 0) m.remote_requests.give_back(key);
    }
    if (wait_ms != 0) {
      change.refused = fail(code::rate_limited, "more group requests of " + r.by() + " or of region " + region +
                                                    " than messages.max_per_second allows here");
      log::get("federation")
          ->info("group {}: a request of {} was refused: {}", r.conversation_id(), r.by(), change.refused->message);
      return;
    }
    change.requests_taken.push_back(key);
  }
  if (seen) {
    b.put(cf::idempotency, *seen, "");
    expire_later(b, now_ms() + std::int64_t(m.options.retention_s) * 1000, keys::expiring::idempotency, *seen);
  }
  auto first = [&] { return r.users_size() > 0 ? r.users(0) : std::string(); };
  switch (r.request()) {
    case federation::group_request::ADD: {
      std::vector<std::string> given(r.users().begin(), r.users().end());
      op_add(m, b, change, r.by(), candidates(m, given, change.failed));
      break;
    }
    case federation::group_request::REMOVE: {
      std::optional<std::string> successor;
      if (!r.successor().empty()) successor = r.successor();
      // A leave is done in the leaver's region already (leave_here): never refused here for
      // its successor (gone meanwhile, or none named by an older region), who is then the
      // heir, as when home removes an owner by itself.
      if (leave && owner_may_leave(c, r.by(), successor))
        successor = heir(c, [&](std::string const& u) { return u == r.by(); });
      op_remove(m, b, change, r.by(), first(), successor);
      break;
    }
    case federation::group_request::ROLE:
      op_role(m, b, change, r.by(), first(), r.role());
      break;
    case federation::group_request::UPDATE: {
      conversation_patch patch;
      if (r.has_title()) patch.title = r.title();
      if (r.has_description()) patch.description = r.description();
      if (r.has_ttl_s()) patch.ttl_s = r.ttl_s();
      if (r.has_history_visible()) patch.history_visible = r.history_visible();
      op_update(m, b, change, r.by(), patch);
      break;
    }
    case federation::group_request::NO_ACCOUNT: {  // from the region of the names, about them
      // `by` is checked against the envelope's region; every name must be of that region.
      auto region = ids::region_of(r.by());
      bool own = r.users_size() >= 1 && static_cast<std::size_t>(r.users_size()) <= max_no_account_names &&
                 r.users(0) == r.by() && std::all_of(r.users().begin(), r.users().end(), [&](std::string const& u) {
                   return ids::region_of(u) == region;
                 });
      if (!own) {
        change.refused = fail(code::invalid_field, "a region speaks only of names of its own, the first in `by`");
        break;
      }
      std::vector<std::string> names(r.users().begin(), r.users().end());
      auto reason = code::user_not_found;
      for (auto known : {code::too_many_groups, code::group_adds_restricted, code::rate_limited})
        if (r.reason() == errors::name(known)) reason = known;
      op_drop_no_account(m, b, change, names, std::string(errors::name(reason)));
      break;
    }
    default:
      change.refused = fail(code::invalid_field, "a group request of a kind this version does not know");
  }
  if (change.refused)
    log::get("federation")
        ->info("group {}: a request of {} was refused: {}", r.conversation_id(), r.by(), change.refused->message);
}

namespace {

// How far a stamp may be ahead of the replica before it is taken for a forgery: past what a
// home restored from a backup jumps (2^20 and 1 a millisecond since the backup, at most four
// years: under 2^37), so that members' messages stamped after the jump wait here for the
// jumped state rather than being refused; what waits is bounded by count below. How many
// messages one origin may have parked in all (the clock skew allowed between regions,
// max_skew_ms, is in detail/limits.hpp).
constexpr std::uint64_t max_versions_ahead = std::uint64_t(1) << 40;
constexpr std::uint64_t max_parked_per_origin = 10000;
// ... and in the groups of one home: a hostile home names a made-up member of a third region
// in its groups, where an honest origin's messages to them would wait for good, and must
// not use up that origin's allowance for the groups of other homes there.
constexpr std::uint64_t max_parked_per_origin_home = 2500;

// Takes the parked bodies whose ref `take` says, out of the index and the store.
template <typename Take>
std::vector<federation::body> take_parked(store::rocks_batch& b, std::string const& conv, Take&& take) {
  std::vector<federation::body> out;
  auto key = keys::parked_key(conv);
  auto index = parse<records::parked_group_messages>(b.get(cf::conversations, key));
  if (!index) return out;
  records::parked_group_messages left;
  std::set<std::string> origins;
  for (auto const& ref : index->refs()) {
    if (!take(ref)) {
      *left.add_refs() = ref;
      continue;
    }
    origins.insert(ref.origin());
    auto body_key = keys::parked_body_key(conv, ref.id());
    federation::body body;
    if (auto bytes = b.get(cf::conversations, body_key); bytes && body.ParseFromString(*bytes))
      out.push_back(std::move(body));
    b.erase(cf::conversations, body_key);
    add_count(b, cf::conversations, keys::parked_count_key(ref.origin()), -1);
    add_count(b, cf::conversations, keys::parked_count_key(ref.origin(), keys::id_home_tag(conv)), -1);
  }
  if (left.refs_size() == index->refs_size()) return out;
  if (left.refs_size() == 0) {
    b.erase(cf::conversations, key);
    // Nothing waits for a group this region has no copy of (its messages deleted while
    // parked): the stamps they noted go too, or an origin naming new groups and deleting
    // their messages would leave a key behind for each.
    if (!b.get(cf::conversations, conv))
      for (auto const& origin : origins) b.erase(cf::conversations, keys::stamp_key(conv, origin));
  } else
    b.put(cf::conversations, key, left.SerializeAsString());
  return out;
}

}  // namespace

// What an honest home sends: at most max_group_members_ever members; the changes of one
// write (a few), each of this group, of some kind (a newer home's kinds too), with a
// version after the replica's and up to the state's. A peer's state of 150,000 members and 500,000 empty changes fits
// in one envelope and would have been one mailbox event per change per local member.
static constexpr int max_group_members_ever = 100000;  // the top of messages.max_group_members
static constexpr int max_changes_per_state = 16;
static constexpr std::int64_t max_late_after_removal_ms = 24LL * 3600 * 1000;
static constexpr int max_users_per_change = 1000 + 1;  // an add takes at most 1,000, plus the creator

bool plausible_state(federation::group_state const& gs, std::uint64_t replica_version) {
  if (gs.members_size() > max_group_members_ever || gs.changes_size() > max_changes_per_state ||
      gs.writers_size() > gs.members_size())
    return false;
  std::unordered_set<std::string_view> seen;  // a name twice would count the group twice for them
  for (auto const& u : gs.members())
    if (!seen.insert(u).second) return false;
  for (auto const& ch : gs.changes()) {
    bool users_ok = ch.users_size() <= max_users_per_change;  // each copied to every local member's event
    if (ch.conversation_id() != gs.conversation_id() || ch.version() <= replica_version ||
        ch.version() > gs.version() || ch.kind() == client::CHANGE_KIND_UNSPECIFIED || !users_ok)
      return false;
  }
  return true;
}

federation::body state_of(message_service::impl const& m, std::string const& conv,
                          records::conversation_record const& c) {
  federation::body body;
  auto* gs = body.mutable_group_state();
  gs->set_conversation_id(conv);
  gs->set_home_region(m.region);
  *gs->mutable_members() = c.members();
  *gs->mutable_roles() = c.roles();
  gs->set_title(c.title());
  gs->set_description(c.description());
  gs->set_ttl_s(c.ttl_s());
  gs->set_history_visible(c.history_visible());
  gs->set_version(c.version());
  gs->set_created_at_ms(c.created_at_ms());
  return body;
}

std::size_t jump_homed_groups(message_service::impl& m, std::uint64_t gap) {
  std::vector<std::string> homed;
  m.db.scan(cf::conversations, "g", "h", [&](std::string_view key, std::string_view value) {
    records::conversation_record c;
    if (keys::well_formed_group_id(key) && c.ParseFromArray(value.data(), static_cast<int>(value.size())) &&
        c.group() && !c.members().empty() && home_of(c, m.region) == m.region)
      homed.emplace_back(key);
    return true;
  });
  constexpr std::size_t per_write = 256;
  for (std::size_t from = 0; from < homed.size(); from += per_write) {
    auto outcome = write_blocking(m.db, [&](store::rocks_batch& b) {
      for (std::size_t i = from; i < std::min(homed.size(), from + per_write); ++i) {
        auto c = parse<records::conversation_record>(b.get(cf::conversations, homed[i]));
        if (!c) continue;
        c->set_version(c->version() + gap);
        b.put(cf::conversations, homed[i], c->SerializeAsString());
        std::set<std::string> regions;
        for (auto const& u : c->members()) regions.insert(std::string(ids::region_of(u)));
        regions.erase(m.region);
        auto state = state_of(m, homed[i], *c);  // built once, queued to each region
        for (auto const& region : regions) m.to_outbox(b, region, state);
      }
      return true;
    });
    if (outcome != store::write_outcome::committed) throw store::rocks_error("the homed groups could not jump ahead");
  }
  return homed.size();
}

std::set<std::string_view> first_member_regions(records::conversation_record const& c, change_state const& st) {
  std::set<std::string_view> added(st.added.begin(), st.added.end()), first;
  for (auto const& u : st.added) first.insert(ids::region_of(u));
  for (auto const& u : c.members())
    if (!added.count(u)) first.erase(ids::region_of(u));
  return first;
}

federation::body with_writers(store::rocks_batch& b, records::conversation_record const& c, change_state const& st,
                              federation::body& state, bool full) {
  // Noted at home with the group's version then (note_writer): since the previous state,
  // whose version is the one before this write's first change.
  std::uint64_t since = st.changes.empty() ? c.version() : st.changes.front().version() - 1;
  federation::body all;
  if (full) all = state;
  for (auto const& u : c.members()) {
    // Only home's own users: a region takes no other from it (group_ops.cpp, apply_state).
    // (This region: a group made before groups crossed regions names no home.)
    if (ids::region_of(u) != state.group_state().home_region()) continue;
    auto noted = b.get(cf::conversations, keys::group_writer_key(st.conversation, u));
    if (!noted) continue;
    if (noted->size() == 8 && keys::from_be64(*noted) >= since) state.mutable_group_state()->add_writers(u);
    if (full) all.mutable_group_state()->add_writers(u);
  }
  return all;
}

void end_replica_if_none_here(message_service::impl const& m, store::rocks_batch& b, std::string const& conv,
                              records::conversation_record& c) {
  auto here = [&](std::string const& u) { return m.is_local(u) && !has_no_account(c, u); };
  if (std::any_of(c.members().begin(), c.members().end(), here)) return;
  for (auto const& u : c.members())
    if (!m.is_local(u)) {
      forget_writer(b, conv, u);
      b.erase(cf::conversations, keys::participant_key(u, conv));
    }
  c.clear_members();
  c.clear_roles();
  c.clear_no_account();
}

std::unordered_map<std::string_view, std::uint64_t> removals(federation::group_state const& gs) {
  std::unordered_map<std::string_view, std::uint64_t> out;
  for (auto const& ch : gs.changes())
    if (ch.kind() == client::MEMBER_REMOVED || ch.kind() == client::MEMBER_LEFT)
      for (auto const& u : ch.users()) out.try_emplace(u, ch.version());
  return out;
}

bool fields_within_limits(message_service::impl const& m, federation::group_state const& gs) {
  // Full ids only: a bare name reads as this region's user but routes nowhere.
  auto is_user = [&m](std::string const& u) {
    auto id = ids::parse_user_id(u, m.region);
    return id && ids::region_of(u) == id->region;
  };
  if (!std::all_of(gs.members().begin(), gs.members().end(), is_user)) return false;
  auto known_role = [](int r) { return r == client::MEMBER || r == client::ADMIN || r == client::OWNER; };
  if (gs.roles_size() != gs.members_size() || !std::all_of(gs.roles().begin(), gs.roles().end(), known_role))
    return false;
  for (auto const& ch : gs.changes()) {
    if (ch.role() != client::MEMBER_ROLE_UNSPECIFIED && !known_role(ch.role())) return false;
    // Only a CREATED or DETAILS_CHANGED change has a title (never empty there).
    auto title = ch.title().empty() ? std::nullopt : std::optional<std::string>(ch.title());
    if (check_patch(m, {title, ch.description(), std::nullopt, std::nullopt, std::nullopt}, true) ||
        ch.reason().size() > 64 || (!ch.by().empty() && !is_user(ch.by())) ||
        !std::all_of(ch.users().begin(), ch.users().end(), is_user))
      return false;
  }
  return true;
}

bool refusal_within_limits(message_service::impl const& m, client::request_refused const& r) {
  auto short_text = [](std::string const& t) { return t.size() <= 1024; };
  return r.request_id().size() <= 64 && r.code().size() <= 64 && short_text(r.message()) && r.failed_size() <= 1001 &&
         std::all_of(r.failed().begin(), r.failed().end(), [&](client::request_refused::member_failure const& f) {
           return ids::parse_user_id(f.user_id(), m.region) && f.code().size() <= 64 && short_text(f.message());
         });
}

group_message_fate fate_of(store::rocks_batch& b, std::optional<records::conversation_record> const& c,
                           federation::body const& body, bool arriving, std::string const& self) {
  auto const& msg = body.message();
  bool member = c && c->group() && member_index(*c, msg.from()) >= 0;
  std::uint64_t stamp = body.group_version();
  if (stamp == 0) return member ? group_message_fate::apply : group_message_fate::refuse;  // an older origin
  if (!keys::well_formed_group_id(msg.conversation_id())) return group_message_fate::refuse;
  // Along its lane an origin's stamps go down only if it went back (restored from a
  // backup, its replica behind what it stamped before): such a stamp proves nothing, and the
  // message is judged as if it had none. A removed member's late window (below) is only for
  // stamps that never went down.
  if (arriving && stamp < read_count(b, cf::conversations, keys::stamp_key(msg.conversation_id(), body.origin())))
    return member ? group_message_fate::apply : group_message_fate::refuse;
  // Home is the authority: what its members send is judged by its roster now (its own
  // state never arrives to release a parked message).
  if (c && c->group() && home_of(*c, self) == self && c->version() < stamp)
    return member ? group_message_fate::apply : group_message_fate::refuse;
  if (!c || c->version() < stamp) return group_message_fate::park;
  if (is_stub(c)) return group_message_fate::drop;
  if (member) return group_message_fate::apply;
  if (!c->group()) return group_message_fate::refuse;
  // Sent before its region learnt of the sender's removal (and not after it, by its clock),
  // arriving within a day of the removal here: the times are the sender region's to claim,
  // and a hostile one would otherwise post as its removed member for ever.
  auto part = load_participant(b, msg.from(), msg.conversation_id());
  bool before_removal = part && !part->member() && part->removed_version() > stamp &&
                        msg.sent_at_ms() <= part->left_at_ms() + max_skew_ms &&
                        now_ms() <= part->left_at_ms() + max_late_after_removal_ms;
  return before_removal ? group_message_fate::apply : group_message_fate::refuse;
}

void note_stamp(store::rocks_batch& b, federation::body const& body) {
  auto key = keys::stamp_key(body.message().conversation_id(), body.origin());
  if (body.group_version() > read_count(b, cf::conversations, key))
    b.put(cf::conversations, key, keys::be64(body.group_version()));
}

bool park_group_message(store::rocks_batch& b, federation::body const& body, std::string const& raw_id,
                        std::optional<records::conversation_record> const& c) {
  auto const& conv = body.message().conversation_id();
  if (c && body.group_version() > c->version() + max_versions_ahead) return false;
  auto key = keys::parked_key(conv);
  auto index =
      parse<records::parked_group_messages>(b.get(cf::conversations, key)).value_or(records::parked_group_messages{});
  auto from_origin = std::count_if(index.refs().begin(), index.refs().end(),
                                   [&body](auto const& ref) { return ref.origin() == body.origin(); });
  if (from_origin >= max_parked) return false;
  if (read_count(b, cf::conversations, keys::parked_count_key(body.origin())) >= max_parked_per_origin) return false;
  auto of_home = keys::parked_count_key(body.origin(), keys::id_home_tag(conv));
  if (read_count(b, cf::conversations, of_home) >= max_parked_per_origin_home) return false;
  auto& ref = *index.add_refs();
  ref.set_stamp(body.group_version());
  ref.set_id(raw_id);
  ref.set_origin(body.origin());
  b.put(cf::conversations, key, index.SerializeAsString());
  federation::body kept = body;
  kept.DiscardUnknownFields();  // kept until its version comes: only what was checked
  b.put(cf::conversations, keys::parked_body_key(conv, raw_id), kept.SerializeAsString());
  add_count(b, cf::conversations, keys::parked_count_key(body.origin()), 1);
  add_count(b, cf::conversations, of_home, 1);
  return true;
}

std::vector<federation::body> unpark_group_messages(store::rocks_batch& b, std::string const& conv,
                                                    std::uint64_t version) {
  return take_parked(b, conv, [&](records::parked_group_message const& ref) { return ref.stamp() <= version; });
}

bool drop_parked(store::rocks_batch& b, std::string const& conv, std::string const& raw_id, std::string const& by) {
  federation::body parked;
  auto bytes = b.get(cf::conversations, keys::parked_body_key(conv, raw_id));
  if (!bytes || !parked.ParseFromString(*bytes) || parked.message().from() != by) return false;  // not theirs
  return !take_parked(b, conv, [&](records::parked_group_message const& ref) { return ref.id() == raw_id; }).empty();
}

std::optional<federation::reject_reason> apply_request_refused(message_service::impl const& m, store::rocks_batch& b,
                                                               federation::body const& body, std::vector<news>& heads) {
  auto const& told = body.group_request_refused();
  auto c = parse<records::conversation_record>(b.get(cf::conversations, told.refusal().conversation_id()));
  // Only the group's home speaks for it, and only to a user of this region who is or was a
  // member of it (the requester): not into any mailbox here.
  if (!c || home_of(*c, m.region) != body.origin() || !m.is_local(told.by()) ||
      !load_participant(b, told.by(), told.refusal().conversation_id()))
    return federation::reject_reason::foreign_user;
  if (!refusal_within_limits(m, told.refusal())) return federation::reject_reason::malformed;
  records::stored_event e;
  *e.mutable_request_refused() = told.refusal();
  e.mutable_request_refused()->DiscardUnknownFields();
  heads.push_back({told.by(), m.append(b, told.by(), e), e});
  return std::nullopt;
}

std::optional<federation::body> refusal_of(federation::group_request const& r, change_state const& st) {
  // A requester's region that gives no request id predates refusals and does not know the body.
  if (r.request_id().empty()) return std::nullopt;
  bool partly = r.request() == federation::group_request::ADD && !st.failed.empty();
  if (!st.refused && !partly) return std::nullopt;
  federation::body out;
  auto& told = *out.mutable_group_request_refused();
  told.set_by(r.by());
  auto& refusal = *told.mutable_refusal();
  refusal.set_conversation_id(r.conversation_id());
  refusal.set_request_id(r.request_id());
  refusal.set_at_ms(now_ms());
  if (st.refused) {
    refusal.set_code(std::string(errors::name(st.refused->code)));
    refusal.set_message(st.refused->message);
  }
  for (auto const& f : st.failed) {
    auto& failed = *refusal.add_failed();
    failed.set_user_id(f.user_id);
    failed.set_code(std::string(errors::name(f.error.code)));
    failed.set_message(f.error.message);
  }
  return out;
}

}  // namespace petchat::messages::service_detail
