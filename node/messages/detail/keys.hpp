// Key layouts of the message store and the message-id format. Big-endian integers make
// RocksDB's bytewise order the numeric order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace petchat::messages::detail {

inline std::string be64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

inline std::uint64_t from_be64(std::string_view s) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < s.size(); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

// Keys made of an owner (a user, a conversation, a destination region), NUL, and what the
// owner has: the scan bounds of everything one owner has, and what follows the owner.
inline std::string first_of(std::string const& owner) {
  return owner + '\0';
}
inline std::string past_last_of(std::string const& owner) {
  return owner + '\x01';
}
inline std::string_view after_owner(std::string_view key, std::string_view owner) {
  return key.substr(owner.size() + 1);
}
// The smallest key greater than `key` (a scan from just after it).
inline std::string successor(std::string key) {
  key.push_back('\0');
  return key;
}

// mailbox: user NUL seq
inline std::string mailbox_key(std::string const& user, std::uint64_t seq) {
  return user + '\0' + be64(seq);
}
// history: conversation NUL message id
inline std::string history_key(std::string const& conv, std::string const& id) {
  return conv + '\0' + id;
}
// idempotency: sender NUL client id
inline std::string idempotency_key(std::string const& sender, std::string const& client_id) {
  return sender + '\0' + client_id;
}
// idempotency: 0x01 requester NUL request id, a group request run at home (no user id starts
// with 0x01, so no send's record is one).
inline std::string group_request_key(std::string const& by, std::string const& request_id) {
  return '\x01' + by + '\0' + request_id;
}
// idempotency: 0x02 owner NUL client id, a group create (the value: the group's id).
inline std::string group_create_key(std::string const& owner, std::string const& client_id) {
  return '\x02' + owner + '\0' + client_id;
}
// expiry: expires_at_ms message id (value empty: the message, its history entry and this)
inline std::string expiry_key(std::int64_t at_ms, std::string const& id) {
  return be64(static_cast<std::uint64_t>(at_ms)) + id;
}
// expiry: expires_at_ms kind key (value: the kind byte): one more entry to remove then.
// (`f`: a local user's record of a group they left, forget_former_member.)
enum class expiring : char { mailbox_entry = 'm', idempotency = 'i', shared_change = 'c', former_member = 'f' };
inline std::string expiry_entry_key(std::int64_t at_ms, expiring kind, std::string const& key) {
  return be64(static_cast<std::uint64_t>(at_ms)) + static_cast<char>(kind) + key;
}
// Every expiry entry due before `at_ms` sorts before this.
inline std::string expiry_due_before(std::int64_t at_ms) {
  return be64(static_cast<std::uint64_t>(at_ms));
}
// What an expiry entry removes, from its key and value: a message id (empty value), or
// the mailbox or idempotency key (the value is the kind byte).
inline std::string expiry_target(std::string_view key, std::string_view value) {
  return std::string(key.substr(value.empty() ? 8 : 9));
}
inline bool expires(std::string_view value, expiring kind) {
  return value.size() == 1 && value[0] == static_cast<char>(kind);
}
// state: mailbox head, device ack position, read mark
inline std::string head_key(std::string const& user) {
  return "h/" + user;
}
// Scan bounds of every mailbox head ('0' follows '/').
inline std::string heads_first() {
  return "h/";
}
inline std::string heads_past_last() {
  return "h0";
}
inline std::string ack_key(std::string const& user, std::string const& device) {
  return "a/" + user + '\0' + device;
}
// state: when the store was last opened past a damaged WAL (be64 ms), if ever
inline std::string salvaged_key() {
  return "salvaged";
}
// Every mailbox event of `user` up to this seq has been looked at for DELIVERED receipts.
// Its value: the seq (be64), then the group positions it reached (records::delivered_positions).
inline std::string delivered_key(std::string const& user) {
  return "d/" + user;
}
// A group's position delivered to `user` by acknowledgement, once it left their mark's list.
inline std::string delivered_position_key(std::string const& user, std::string const& conv) {
  return "dg/" + user + '\0' + conv;
}
inline std::string read_key(std::string const& conv, std::string const& user) {
  return "r/" + conv + '\0' + user;
}
// state: federation lanes. The epoch of this node's outbound lanes, the next seq of the lane
// to each destination, the (epoch, seq) applied from each origin, each origin's inbound stream position.
inline std::string lane_epoch_key() {
  return "fe";
}
inline std::string lane_epoch_key(std::string const& destination) {
  return "fe/" + destination;
}
inline std::string outbound_lane_key(std::string const& destination) {
  return "fo/" + destination;
}
// The lane seq `destination` last confirmed (outbox entries up to it are held only for
// federation.keep_confirmed_s); absent in stores older than it: everything held is unconfirmed.
inline std::string outbound_confirmed_key(std::string const& destination) {
  return "fc/" + destination;
}
inline std::string inbound_lane_key(std::string const& origin) {
  return "fi/" + origin;
}
// Scan bounds of every inbound lane ('0' follows '/'), and the origin in a key.
inline std::string inbound_lanes_first() {
  return "fi/";
}
inline std::string inbound_lanes_past_last() {
  return "fi0";
}
inline std::string_view origin_of_inbound_lane(std::string_view key) {
  return key.substr(3);
}
// The stream position of the last envelope applied from `origin`; a store written before
// positions were kept per origin has one for every origin, without the origin ("fp").
inline std::string inbound_position_key(std::string_view origin = {}) {
  return origin.empty() ? "fp" : "fp/" + std::string(origin);
}
// outbox: destination NUL lane seq
inline std::string outbox_key(std::string const& destination, std::uint64_t seq) {
  return destination + '\0' + be64(seq);
}
std::uint64_t random_u64();

// conversations: a user's contact index, owned by contacts_owner(user)
inline std::string contacts_owner(std::string const& user) {
  return "u/" + user;
}
inline std::string contact_key(std::string const& user, std::string const& peer) {
  return contacts_owner(user) + '\0' + peer;
}

// conversations: `from` has written to `to` at least once, or in the group `to` (presence
// is mutual: both have)
inline std::string wrote_key(std::string const& from, std::string const& to) {
  return "w/" + from + '\0' + to;
}
// conversations: the members who have written in a group (the same fact as wrote_key's,
// kept the other way round so that a group's writers are one scan).
inline std::string group_writers_owner(std::string const& group) {
  return "wg/" + group;
}
inline std::string group_writer_key(std::string const& group, std::string const& user) {
  return group_writers_owner(group) + '\0' + user;
}

// conversations: a conversation's activity; a user's part in a conversation (owned by
// participants_owner(user)); how many groups a user is a member of.
inline std::string activity_key(std::string const& conv) {
  return "a/" + conv;
}
inline std::string participants_owner(std::string const& user) {
  return "p/" + user;
}
inline std::string participant_key(std::string const& user, std::string const& conv) {
  return participants_owner(user) + '\0' + conv;
}
// The user and the conversation of a participant_key (user ids hold no NUL).
inline std::pair<std::string, std::string> split_participant_key(std::string_view key) {
  key.remove_prefix(2);
  auto nul = key.find('\0');
  return {std::string(key.substr(0, nul)),
          nul == std::string_view::npos ? std::string() : std::string(key.substr(nul + 1))};
}
inline std::string group_count_key(std::string const& user) {
  return "gc/" + user;
}
// A group change stored once for the local members it is told to (stored_event's
// conversation_change_ref), named by the first one's mailbox entry.
inline std::string shared_change_key(std::string const& first_user, std::uint64_t seq) {
  return "ch/" + mailbox_key(first_user, seq);
}
// Group messages waiting for the replica's version: the index (parked_group_messages), each
// body, how many one origin has parked in all, and the highest version an origin stamped a
// message of the conversation with.
inline std::string parked_key(std::string const& conv) {
  return "q/" + conv;
}
inline std::string parked_body_key(std::string const& conv, std::string const& raw_id) {
  return "qb/" + conv + '\0' + raw_id;
}
inline std::string parked_count_key(std::string const& origin) {
  return "qo/" + origin;
}
// The same for the groups whose id names one home (`id_home_tag`): one origin's parked
// messages in the groups of one home.
inline std::string parked_count_key(std::string const& origin, std::string_view tag) {
  return "qo/" + origin + '\0' + std::string(tag);
}
// What a group id says of its home (docs/FEDERATION.md: `g`, then 20 bytes in base64url
// whose first 4 are a hash of the home's name): those 4 bytes; empty for ids made before
// homes were named in them, "?" for a 28-character id that does not decode (no home makes one).
std::string id_home_tag(std::string_view conv);
// How many stubs (groups of another home with no roster here) `home` has made here.
inline std::string stub_count_key(std::string const& home) {
  return "hs/" + home;
}
inline std::string stamp_key(std::string const& conv, std::string const& origin) {
  return "qv/" + conv + '\0' + origin;
}
// receipts: a group message's counts (its id), fan-out (id 0x01), a member's receipt (id NUL
// user), the members its acknowledgements delivered it to (id 0x02 n)
inline std::string delivered_batch_key(std::string const& id, std::uint64_t n) {
  return id + '\x02' + be64(n);
}
inline std::string receipt_counts_key(std::string const& id) {
  return id;
}
inline std::string fanout_key(std::string const& id) {
  return id + '\x01';
}
inline std::string receipt_key(std::string const& id, std::string const& user) {
  return id + '\0' + user;
}
// Group ids: "g" and, in URL-safe base64, the first 4 bytes of the BLAKE2b hash of the
// home region's name and 16 random bytes (27 characters), so that no other region can
// claim to be a group's home where no replica is yet; ids made before that are "g" and
// the 16 random bytes (22 characters). Direct ones start with "d".
std::string new_group_id(std::string_view home);
// Whether a group id can be homed in `region`: false only for an id that names another
// home (an id of the older form names none).
bool group_id_allows_home(std::string_view conv, std::string_view region);
// A group request's id (the 202 answer's `request_id`): "r" and 16 random characters.
std::string new_request_id();
inline bool is_group(std::string_view conv) {
  return !conv.empty() && conv[0] == 'g';
}
// A group id as this node and its peers make them: "g" and base64url characters (1 to 63
// of them). Ids from other regions are checked with it before any key is made of them: a
// NUL or a byte below base64url's would let one id's keys fall among another's.
bool well_formed_group_id(std::string_view conv);
// A group id so made, or a direct conversation's ("d" and base64url): what a client may name.
bool well_formed_conversation_id(std::string_view conv);

// Message ids: 16 bytes = milliseconds since the epoch (6 bytes) | region hash (2 bytes) |
// counter (8 bytes, starting at a random value in each millisecond). Bytewise order is
// time order; the id is printed as 22 characters of URL-safe base64.
std::string new_message_id(std::uint16_t region_hash);
// Ids made from now on are after the millisecond `ms` (the newest this region stored), even
// while the wall clock is behind it (detail/opening.hpp).
void keep_ids_after(std::int64_t ms);
// The 16 bits of a message id that name the region that made it: the first two bytes of the
// BLAKE2b hash of the region name (stable across builds: other regions check it).
std::uint16_t region_hash(std::string_view region);
std::uint16_t message_id_region_hash(std::string_view id);
std::int64_t message_id_time_ms(std::string_view id);
// Smallest id of the given millisecond (for time-range bounds).
std::string message_id_floor(std::int64_t ms);

// 1:1 conversation id from its two members, independent of their order.
std::string direct_conversation_id(std::string const& a, std::string const& b);

}  // namespace petchat::messages::detail
