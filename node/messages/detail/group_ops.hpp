// Group changes inside a write, shared by the client-facing operations (groups.cpp) and
// the federation side (federated.cpp: a home region making a change a member of another
// region asked for, and a region applying its home's group_state). Each op checks the
// caller's membership and role against the group as committed and makes the change, its
// conversation_change events (in local members' mailboxes) and, at home, its group_state
// to every other region concerned (docs/FEDERATION.md, "Groups across regions").
#pragma once

#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "node/messages/detail/service.hpp"

namespace petchat::messages::service_detail {

// What a change's write did.
struct change_state {
  std::string conversation;
  std::vector<news> heads;
  std::optional<errors::failure> refused;
  std::vector<std::string> added;
  std::vector<member_failure> failed;
  std::vector<client::conversation_change> changes;
  std::vector<std::string> departed;  // members who went
  bool queued = false;                // group_state or group_request bodies went to the outbox
  std::string request_id;             // a request to another region's group: its id (the 202's)
  // Local users another region's state made members, whose join (messages.max_joins_per_hour)
  // this write counted: given back if it does not commit (the applier tries again).
  std::vector<std::string> joins_taken;
  // At home: the group request this write charged (its region NUL its requester), given
  // back if the request is refused, changes nothing, or its write does not commit.
  std::vector<std::string> requests_taken;

  // Before the write runs (again): only what was worked out before it stays.
  void restart(std::size_t failed_before_write) {
    heads.clear();
    refused.reset();
    added.clear();
    failed.resize(failed_before_write);
    changes.clear();
    departed.clear();
    queued = false;
  }

  // Its counted joins given back: the write did not commit.
  static void give_back_joins(message_service::impl const& m, std::vector<std::string> const& users) {
    for (auto const& u : users) m.joins.give_back(u);
  }
  // (Each is its requester's region NUL the requester: both buckets.)
  static void give_back_requests(message_service::impl const& m, std::vector<std::string> const& taken) {
    for (auto const& key : taken) {
      m.remote_requests.give_back(key);
      m.region_requests.give_back(key.substr(0, key.find('\0')));
    }
  }
};

// A group's title (1 to 128 bytes of UTF-8, one line), description (at most 1024, lines)
// and ttl_s (at most messages.retention_s), as set by a patch or a creation: invalid_field,
// or nothing. Neither may hold control characters or direction overrides
// (format::plain_text_length), except `from_home`: what a home region's state says is held
// only to the sizes and UTF-8, as homes of earlier versions did not refuse them.
std::optional<errors::failure> check_patch(message_service::impl const& m, conversation_patch const& patch,
                                           bool from_home = false);

// Who may be added, worked out before the write: users of this region that exist, and
// users of federated regions (their region has the say). The rest fail, with why.
std::vector<std::string> candidates(message_service::impl const& m, std::vector<std::string> const& given,
                                    std::vector<member_failure>& failed);
// Inside a create's or an add's write: whether `user` has an account (a local user may have
// been deleted since candidates() looked: see account_deleted).
bool has_account(message_service::impl const& m, std::string const& user);
// Whether `user` is of this region and chose group_adds "contacts"; and whether `user` may
// be added to a group by `by` inside the write `b`: anyone may, unless that is so (then only
// someone they have written to directly may; nobody when `by` is not known: empty).
bool adds_only_from_contacts(message_service::impl const& m, std::string const& user);
bool wrote_to(store::rocks_batch& b, std::string const& user, std::string const& by);  // (or is `by`)
bool accepts_adds_from(message_service::impl const& m, store::rocks_batch& b, std::string const& user,
                       std::string const& by);
// Inside the write, for a user about to join: user_not_found (no account any more),
// group_adds_restricted (accepts_adds_from), or
// rate_limited for a user of this region whom others have added to groups too often lately
// (messages.max_joins_per_hour: a stranger must not fill anyone's conversation list or use
// up their groups). Only a join that happens takes one of the user's allowance; `by`
// joining themselves takes none.
std::optional<errors::failure> refuse_join(message_service::impl const& m, store::rocks_batch& b, std::string const& by,
                                           std::string const& user);

// A change event to the mailboxes of the local `users` (node/messages/group_changes.cpp).
void post_change(message_service::impl const& m, store::rocks_batch& b, client::conversation_change const& ch,
                 google::protobuf::RepeatedPtrField<std::string> const& users, std::vector<news>& heads);
// In a member region, applying `gs`: home is asked to remove `users`, names of this region
// that cannot be members here, with `reason` (group_changes.cpp).
void ask_to_remove(message_service::impl const& m, store::rocks_batch& b, federation::group_state const& gs,
                   std::vector<std::string> const& users, change_state& st, std::string const& reason);
// In a member region, applying `gs`: its names of this region that join now, and those who
// cannot (no account of that name; one in as many groups as a user may be, counted here, not
// at home; one who takes adds only from people they wrote to): no members here, and home is
// asked to remove them (group_changes.cpp). `was_in`, `none_before`: the replica's members
// and no-account names.
struct local_joins {
  std::vector<std::string> no_account, over_limit, restricted, too_often;
  std::vector<std::string> joins_taken;  // those counted against messages.max_joins_per_hour
  std::vector<char> kept;                // by position in the state's roster: 0 for a name that cannot join
  bool any = false;                      // a member here who gets events, staying or joining
};
local_joins judge_local_members(message_service::impl const& m, store::rocks_batch& b,
                                federation::group_state const& gs, std::unordered_set<std::string_view> const& was_in,
                                std::unordered_set<std::string_view> const& none_before);
void ask_to_remove(message_service::impl const& m, store::rocks_batch& b, federation::group_state const& gs,
                   local_joins const& j, change_state& st);
// Who added `user` by the changes `gs` carries, or empty (group_changes.cpp; `adders`: a
// map made once per state when first asked).
std::string adder_of(federation::group_state const& gs, std::unordered_map<std::string_view, std::string_view>& adders,
                     std::string const& user);

// Whether `by` may leave `c` (an owner with other members hands ownership to `successor`,
// another member): owner_must_hand_over, invalid_field, or nothing.
std::optional<errors::failure> owner_may_leave(records::conversation_record const& c, std::string const& by,
                                               std::optional<std::string> const& successor);
// Who takes an owner's role when they go without naming one: the first admin who stays, or
// else the first other member who stays; empty if nobody stays (`going(user)`: who goes).
template <typename Going>
std::string heir(records::conversation_record const& c, Going&& going) {
  for (auto role : {client::ADMIN, client::MEMBER})
    for (int i = 0; i < c.members_size(); ++i)
      if (!going(c.members(i)) && role_at(c, i) == role) return c.members(i);
  return {};
}
// A local `user` leaves `c`, a group homed in another region, inside the write that asks
// home to make the leave: their period ends here at once (home may be away for days, or
// never make it); the replica keeps their name as one that gets nothing here until home's
// state drops it (`no_account`), and their devices get MEMBER_LEFT now (group_changes.cpp).
void leave_here(message_service::impl const& m, store::rocks_batch& b, records::conversation_record& c,
                std::string const& user, change_state& st);

// The changes, at the group's home (op_create: a new group, homed here). False: nothing
// to write (st.refused says why, if anything is wrong).
bool op_create(message_service::impl const& m, store::rocks_batch& b, change_state& st, std::string const& owner,
               group_spec const& spec, std::vector<std::string> const& users);
bool op_add(message_service::impl const& m, store::rocks_batch& b, change_state& st, std::string const& by,
            std::vector<std::string> const& users);
bool op_remove(message_service::impl const& m, store::rocks_batch& b, change_state& st, std::string const& by,
               std::string const& who, std::optional<std::string> const& successor);
// Names one NO_ACCOUNT request asks home to remove, at most (a state naming more sends more).
inline constexpr std::size_t max_no_account_names = 1000;
// At home, asked by the region of the names `who`, which has no account of those names (or
// whose accounts are in as many groups as they may be): those still members are removed in
// one change (MEMBER_REMOVED by nobody naming them all, with `reason`, user_not_found or
// too_many_groups; an owner's role goes first to the first admin who stays, or else the
// first other member). False if none is a member.
bool op_drop_no_account(message_service::impl const& m, store::rocks_batch& b, change_state& st,
                        std::vector<std::string> const& who, std::string const& reason);
bool op_role(message_service::impl const& m, store::rocks_batch& b, change_state& st, std::string const& by,
             std::string const& who, client::member_role role);
bool op_update(message_service::impl const& m, store::rocks_batch& b, change_state& st, std::string const& by,
               conversation_patch const& patch);

// A region that is not the group's home applies its group_state: the replica, its own
// members' periods, the change events in their mailboxes. Returns the refusal, if any.
std::optional<federation::reject_reason> apply_group_state(message_service::impl const& m, store::rocks_batch& b,
                                                           federation::group_state const& gs, change_state& st);

// At the home region, after running a member of another region's request `r`: a body that
// tells the requester that home refused it (st.refused) or left members out of an add
// (st.failed); nothing when it was made whole.
std::optional<federation::body> refusal_of(federation::group_request const& r, change_state const& st);

// At the requester's region: a refusal from the group's home, as a request_refused event in
// the requester's mailbox. Returns why it is refused, if it is.
std::optional<federation::reject_reason> apply_request_refused(message_service::impl const& m, store::rocks_batch& b,
                                                               federation::body const& body, std::vector<news>& heads);

// At home: a member of another region's request about group `c` (as the write found it),
// made as home makes its own users' changes (change.refused: why not; logged).
void run_request(message_service::impl const& m, store::rocks_batch& b, records::conversation_record const& c,
                 federation::group_request const& r, change_state& change);

// A group message from a member of another region (`body`), against this region's replica
// `c` (docs/FEDERATION.md, "Groups across regions"): parked if the replica has not reached
// the version the message is stamped with (the sender may have been added since; the
// membership of then decides when it has); applied if the sender is a member, or was
// removed by a change after that version; else refused. `arriving`: as it comes off its
// lane (not out of parking): then a stamp below one its origin used before counts for
// nothing (judged as if the body had none).
// `drop`: the replica holds no roster (no member here), and the message is from before its
// version: there is no one here to give it to.
enum class group_message_fate { apply, park, refuse, drop };
// No replica, or one that holds only a group's home and version (none of this region's
// names in it could join: apply_group_state). One home makes at most max_stubs_per_home
// here (each group id it made up would be one more record for ever).
inline constexpr std::uint64_t max_stubs_per_home = 100000;
inline bool is_stub(std::optional<records::conversation_record> const& c) {
  return !c || (c->group() && c->members().empty());
}
// Whether a group_state could come from an honest home (group_remote.cpp): sizes, and
// changes of this group after the replica's version (`replica_version`, 0 without one).
bool plausible_state(federation::group_state const& gs, std::uint64_t replica_version);
// A replica's state `c` (its no_account sorted) that names none of this region's users any
// more: its roster goes, and the records of the other regions' members with it (home sends
// no state here from then on, and a home that added one real user to a roster of 100,000
// names, then removed them, would otherwise leave both here for good). What is left is the
// group that ended here (its settings, version and activity: is_stub); an add starts it
// again from there.
void end_replica_if_none_here(message_service::impl const& m, store::rocks_batch& b, std::string const& conv,
                              records::conversation_record& c);
// At home: the group's group_state as it stands (no changes listed), for every other region
// with members.
federation::body state_of(message_service::impl const& m, std::string const& conv,
                          records::conversation_record const& c);
// At home, once, when the store was salvaged or restored from a backup (after_salvage): the
// changes since the backup are gone here but the other regions' replicas hold them, and would
// take none of this home's states until its versions passed theirs again. Every group homed
// here jumps `gap` versions ahead, and its state goes to the regions of its members. Returns
// how many groups did.
std::size_t jump_homed_groups(message_service::impl& m, std::uint64_t gap);
// At home: the regions a change gives their first members (their members all just added).
std::set<std::string_view> first_member_regions(records::conversation_record const& c, change_state const& st);
// At home: `state` gets, as `writers`, the members who wrote since the previous state (a
// message may still have been on its way from another region when that state went); with
// `full`, the returned copy gets all who ever wrote, for regions getting their first members.
federation::body with_writers(store::rocks_batch& b, records::conversation_record const& c, change_state const& st,
                              federation::body& state, bool full);
// The users a state's changes remove (MEMBER_REMOVED, MEMBER_LEFT), each with the version of
// the first change that does. One who went by none of them (states were skipped) went at
// the earliest right after the replica's version.
std::unordered_map<std::string_view, std::uint64_t> removals(federation::group_state const& gs);
// Each change of a state from the home becomes an event in every local member's mailbox:
// its fields are held to what a change made here may hold (names that are user ids, title
// and description within the limits), or a hostile home could pad them at will.
bool fields_within_limits(message_service::impl const& m, federation::group_state const& gs);
// And a refusal from the home, which goes into the requester's mailbox as it is: what one
// made here holds, at most (ids, codes and messages of a sane length, 1,001 names).
bool refusal_within_limits(message_service::impl const& m, client::request_refused const& r);

// How a group message from another region is judged (`self`: this region). At its home a
// group waits for no version: a stamp ahead of it is from before the home was restored.
group_message_fate fate_of(store::rocks_batch& b, std::optional<records::conversation_record> const& c,
                           federation::body const& body, bool arriving, std::string const& self);

// A group message taken off its lane (applied or parked): its stamp is the lowest its
// origin may use for the group from now on.
void note_stamp(store::rocks_batch& b, federation::body const& body);

// Keeps `body` (message `raw_id`) until the replica reaches its version. False when it may
// not wait: too many waiting from its origin (max_parked for the group, 10,000 in all: one
// region filling a group's places must not leave none for another's), or a stamp more than
// 1,000 versions ahead of the replica.
inline constexpr int max_parked = 1000;
bool park_group_message(store::rocks_batch& b, federation::body const& body, std::string const& raw_id,
                        std::optional<records::conversation_record> const& c);
// Takes the parked bodies of `conv` that its replica, now at `version`, can apply, in the
// order they came; the others stay.
std::vector<federation::body> unpark_group_messages(store::rocks_batch& b, std::string const& conv,
                                                    std::uint64_t version);
// A deletion for everyone (by `by`) of a message that is still parked: it goes. True if it did.
bool drop_parked(store::rocks_batch& b, std::string const& conv, std::string const& raw_id, std::string const& by);

// An event of a group about its message at position `seq` (a deletion) to the mailboxes of
// its local members whose period holds that message: not to one who joined after it with
// the history hidden (the event names its sender and time), nor to one gone.
inline void tell_local_members(message_service::impl const& m, store::rocks_batch& b,
                               records::conversation_record const& c, std::string const& conv, std::uint64_t seq,
                               records::stored_event const& e, std::vector<news>& heads) {
  for (auto const& member : c.members()) {
    if (!m.is_local(member) || !gets_events(c, member)) continue;
    auto p = seq == 0 ? std::nullopt : load_participant(b, member, conv);  // 0: from before positions
    if (seq == 0 || (p && in_period(*p, seq))) heads.push_back({member, m.append(b, member, e), e});
  }
}

// The same to its local members, and as one envelope to each other region with members
// (which tells its own members alike). True if any went to the outbox.
inline bool tell_group(message_service::impl const& m, store::rocks_batch& b, records::conversation_record const& c,
                       std::string const& conv, std::uint64_t seq, records::stored_event const& e,
                       std::vector<news>& heads) {
  tell_local_members(m, b, c, conv, seq, e, heads);
  std::set<std::string> regions;
  for (auto const& member : c.members())
    if (!m.is_local(member)) regions.emplace(ids::region_of(member));
  for (auto const& r : regions) {
    federation::body envelope;
    *envelope.mutable_deleted() = e.deleted();
    m.to_outbox(b, r, std::move(envelope));
  }
  return !regions.empty();
}

// The group's home region as this region's replica says, or nullopt for no group.
std::optional<std::string> home_of(records::conversation_record const& c, std::string const& local_region);

}  // namespace petchat::messages::service_detail
