// The message service: per-user mailboxes with gapless sequence numbers, conversation
// history, delivery and read receipts, idempotent sends, deletion and expiry. It owns the
// RocksDB database `<data_dir>/messages`; every write goes through its commit pipeline,
// so an `accepted` (or any other answer) is given only once the change is durable.
//
// Listeners learn of new mailbox events after they are committed, which is how the
// WebSocket manager pushes them out (see set_listener for the thread).
//
// Threads: the awaitable operations may be started from any Asio executor (they resume
// on it); the plain reads (`mailbox_head`, `events_after`, `history`...) may be called from
// any thread and read committed state. Unless a function says otherwise its expected
// failures are the errors::code values it lists, and every write can also fail with
// `store_unavailable` (the store refuses writes, e.g. a full disk) or `internal`.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "client.pb.h"
#include "federation/federation.hpp"
#include "node/config/config.hpp"
#include "node/errors/errors.hpp"
#include "node/users/users.hpp"
#include "node/ws/ws.hpp"
#include "store/commits.hpp"

namespace petchat::messages {

using boost::asio::awaitable;
using errors::result;

struct history_query {
  std::optional<std::string> before{}, after{};  // message ids (printed form)
  std::optional<std::int64_t> since_ms{}, until_ms{};
  std::size_t limit = 50;
};
struct history_page {
  std::vector<client::message> messages;  // oldest first
  bool has_more_before = false;
  bool has_more_after = false;
};

// Groups and the conversation list (docs/PROTOCOL.md, "Conversations and groups").
struct group_spec {
  std::string title, description, client_id;  // client_id: "" or the create's idempotency key
  std::vector<std::string> members;           // user ids as given
  bool history_visible = false;
  std::uint32_t ttl_s = 0;
};
struct conversation_patch {
  std::optional<std::string> title, description;
  std::optional<std::uint32_t> ttl_s;
  std::optional<bool> history_visible, muted;
};
struct member_failure {
  std::string user_id;
  errors::failure error;
};
struct member_view {
  std::string user_id;
  client::member_role role = client::MEMBER;
  // False for a name of this region the group lists that gets nothing here (no account of
  // it, or a leave made here that home has not made: docs/FEDERATION.md): not a member
  // here, and their presence is not the group's to see.
  bool shares_presence = true;
};
// A conversation as one user sees it: the list's summary, and with `members` its details.
struct conversation_view {
  std::string id;
  bool group = false;
  std::string title;  // a direct conversation's: the other member
  std::string peer;   // direct only
  std::string description, owner;
  std::vector<member_view> members;  // details only
  std::size_t member_count = 0;
  bool member = true;  // false once the user left or was removed
  bool bare = false;   // only `id` is known (the user left it: no view of theirs to give)
  std::optional<client::message> last_message;
  std::int64_t last_activity_ms = 0;
  std::uint64_t unread = 0;
  std::optional<std::string> read_mark;  // a message id
  bool muted = false;
  std::uint32_t ttl_s = 0;
  bool history_visible = false;
  std::uint64_t version = 0;
  std::int64_t created_at_ms = 0;
  // The answer to a change of a group homed in another region: the change was sent there
  // and is not made yet (this is the view before it), as the request `request_id`.
  bool queued = false;
  std::string request_id{};
};
struct conversation_page {
  std::vector<conversation_view> conversations;
  std::optional<std::string> next;  // the cursor of the next page
};
struct membership_result {
  conversation_view conversation;
  std::vector<std::string> added;
  std::vector<member_failure> failed;
  bool queued = false, repeated = false;  // sent to home: nothing added here yet; a create made before
  std::string request_id{};               // when queued: the request's id (a refusal names it)
};
struct receipt_view {
  std::string user_id;
  std::int64_t delivered_at_ms = 0;
  std::int64_t read_at_ms = 0;
};
struct message_receipts {
  std::string message_id, conversation_id;
  std::uint32_t recipients = 0, delivered_count = 0, read_count = 0;
  std::vector<receipt_view> members;
};

// Assets (docs/PROTOCOL.md, "Assets"): the records; the bytes are node/assets' files.
// Hashes are the 32 raw bytes of BLAKE2b-256.
struct asset_view {
  std::string hash;  // 32 bytes
  std::uint64_t size = 0;
  std::string content_type;
  std::int64_t created_at_ms = 0;
  std::uint32_t width = 0, height = 0;
  std::string thumbnail;     // its hash, or empty
  std::string thumbnail_of;  // for a thumbnail: its original's hash
  // The caller's own upload of it, if any.
  std::string name, declared_type;
  bool uploaded_by_caller = false;
};
struct upload_view {
  std::string id;
  std::string user;
  std::uint64_t length = 0, offset = 0;
  std::int64_t created_at_ms = 0, expires_at_ms = 0;
  std::string name, declared_type;
  std::string expected_hash;  // 32 bytes or empty
  std::string asset;          // complete: the asset's hash (offset == length), else empty
};
// A complete upload, hashed and in place, to be recorded.
struct new_asset {
  std::string hash;
  std::uint64_t size = 0;
  std::string content_type;
  std::uint32_t width = 0, height = 0;
  std::string name, declared_type;
  // Its thumbnail, in place too (hash empty: none).
  std::string thumbnail_hash;
  std::uint64_t thumbnail_size = 0;
};
// What the collector removed: the blobs to delete now that their records are gone.
struct collected_asset {
  bool removed = false;
  std::vector<std::string> blobs;  // hashes
};
// An asset to fetch from another region (docs/FEDERATION.md, "Assets across regions").
struct pending_fetch {
  std::string hash;
  std::string region;
  std::string thumbnail_of;                 // a thumbnail: its original's hash
  std::uint32_t tries = 0, mismatches = 0;  // failed tries; those whose bytes did not match
  bool proof = false;                       // stored here already: fetched only as the region's proof that it holds it
  std::uint64_t region_bytes = 0;           // stored here that were fetched from `region` (its budget's use)
};
struct asset_usage {
  std::string user;
  std::uint64_t bytes = 0;  // stored, uploads in progress at their length included
  std::uint64_t uploads = 0;
};

// Push records node/notify keeps here, so a push is decided in the write of its event (PROTOCOL "Push notifications").
struct push_target {
  std::string id;  // base64url
  std::string user, device_id;
  std::string kind;                        // "webpush", "unifiedpush", "matrix"
  std::string endpoint, place;             // place: its origin as node/notify spells it (push_limits)
  std::string p256dh, auth;                // raw bytes (Web Push)
  std::string app_id, pushkey, data_json;  // Matrix
  std::int64_t created_at_ms = 0;
  std::uint64_t pushed_through = 0;  // mailbox seq the last push covered
  std::int64_t last_push_ms = 0;
  std::uint32_t failures = 0;
  std::int64_t failing_since_ms = 0;  // the first of those failures
  std::int64_t attempt_ms = 0;        // a push on its way since then, outcome not written (0: none)
  std::int64_t next_try_ms = 0;       // a failure's back-off or Retry-After ends then (0: none)
  // The same registration as `o` (kind, endpoint or gateway, keys, data): what a push is made for.
  bool registered_as(push_target const& o) const {
    return kind == o.kind && endpoint == o.endpoint && p256dh == o.p256dh && auth == o.auth && data_json == o.data_json;
  }
};
// A target's limits: per device, per user, per place it pushes to over all users (0: none).
struct push_limits {
  std::size_t per_device = 0, per_user = 0, per_place = 0;
};
struct push_settings {
  bool previews = false;
  bool dnd = false;
  int dnd_start_min = 0, dnd_end_min = 0, utc_offset_min = 0;
};
// A user with pushes pending (the push outbox).
struct push_pending {
  std::string user;
  std::int64_t since_ms = 0, last_ms = 0;
  std::uint64_t last_seq = 0;
};
// A batch of mailbox events for one device, in seq order.
struct mailbox_read {
  std::vector<client::event> events;
  std::uint64_t last_seq = 0;  // highest seq looked at (events for expired messages are skipped)
};

// Deepest nesting of objects and lists allowed in body.content; the content object itself
// is depth 1 (docs/PROTOCOL.md, "Message bodies").
inline constexpr std::size_t max_content_depth = 16;

// No collected blob may go between a backup's checkpoint and its links to the blobs
// (node/backup): a message in the checkpoint could name it. The collector enters before it
// removes an asset's record and leaves once the files are gone (skipping its round while
// the gate is held); a backup holds it meanwhile, once collections under way have ended
// (false if they do not within `wait`: the gate is then not held).
class blob_removal_gate {
 public:
  bool try_enter() {
    std::lock_guard lock(mutex_);
    if (held_) return false;
    ++removing_;
    return true;
  }
  void leave() {
    std::lock_guard lock(mutex_);
    --removing_;
    done_.notify_all();
  }
  bool hold(std::chrono::milliseconds wait) {
    std::unique_lock lock(mutex_);
    held_ = true;
    if (done_.wait_for(lock, wait, [this] { return removing_ == 0; })) return true;
    held_ = false;
    return false;
  }
  void release() {
    std::lock_guard lock(mutex_);
    held_ = false;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  bool held_ = false;  // guarded
  int removing_ = 0;   // guarded
};

class message_service {
 public:
  // `sync` false skips the WAL fsync (benchmarks only: acknowledged data can be lost).
  // Throws store::damage_error if the store's files are damaged, unless `salvage` (open
  // with what precedes the damage; mailbox seqs then jump ahead: see after_salvage), which
  // is also how a restored store opens: `current_at_ms` is then when its data was last
  // current (the backup's time; 0: not known, as after a salvage).
  message_service(config::messages_section const& options, std::string region, std::filesystem::path const& data_dir,
                  users::user_service& users, bool sync = true, bool salvage = false, std::int64_t current_at_ms = 0);
  ~message_service();

  // Who is told of each event appended to a mailbox, after its commit, before any traffic:
  // the user, the event's seq (the new head) and the event (null when it is cheaper for the
  // receiver to read it from the store). It runs where the write was made: in the
  // coroutine that made a local change (on the caller's executor), and on the federation
  // applier thread for inbound envelopes; it must only hand the news on, never block.
  void set_listener(ws::mailbox_listener& listener);

  // Federation, before any traffic: users of the directory's other regions become valid
  // recipients, envelopes for them go to the durable outbox, and `on_outbox` is called
  // after each commit that queued some. The returned store is what the link reads the
  // outbox from and applies inbound envelopes through.
  federation::local_store& enable_federation(federation::directory const& regions, std::function<void()> on_outbox);

  // Validates, applies the rate limit, and stores the message in both mailboxes durably.
  // A repeated client_id returns the original acceptance with duplicate = true (while the
  // original has not expired). Errors: missing_field, invalid_field (client_id, to, the
  // body rule), body_too_large, user_not_found, rate_limited (retry_after_s set).
  awaitable<result<client::accepted>> send(std::string from, client::send request);

  // Cumulative delivery acknowledgement of `device` of `user` up to `seq`: stores the
  // device's position and makes the DELIVERED receipts (walking the mailbox from the
  // user's delivered mark, in slices). Errors: invalid_field (seq beyond the head).
  awaitable<errors::status> ack(std::string user, std::string device, std::uint64_t seq);
  // The same without a coroutine (the live stream's acknowledgements): `done` runs on `ex`
  // with the outcome once it is durable, refused or failed. Acknowledgements that arrive
  // while a write of acknowledgements is queued join it: a group's members acknowledging
  // one message cost one write request, not one each.
  using ack_done = std::function<void(errors::status)>;
  void ack(std::string user, std::string device, std::uint64_t seq, boost::asio::any_io_executor ex, ack_done done);

  // `user` has read `conversation_id` up to `message_id`: marks every message to the user up
  // to it read, sends DELIVERED for the ones never acknowledged and then one READ, and a
  // read_mark event to the user. Errors: missing_field, conversation_not_found, message_not_found.
  awaitable<errors::status> read(std::string user, std::string conversation_id, std::string message_id);

  // Deletes for the caller, or (sender only, within the window) for everyone.
  // Errors: message_not_found, not_sender, not_a_member, delete_window_passed.
  awaitable<errors::status> remove(std::string user, std::string message_id, bool for_everyone);

  // The newest seq of `user`'s mailbox (0 if empty); `device`'s acknowledged seq (0: none). Committed.
  std::uint64_t mailbox_head(std::string const& user) const;
  std::uint64_t acked(std::string const& user, std::string const& device) const;

  // Up to `limit` events with seq > after (those of expired or deleted messages skipped;
  // `last_seq` says how far it looked: at most 4,096 seqs a call, a slice at a time).
  mailbox_read events_after(std::string const& user, std::uint64_t after, std::size_t limit) const;

  // A page of a conversation's history as `user` may see it (docs/PROTOCOL.md, History).
  // Errors: conversation_not_found, not_a_member, invalid_field (a bound that is no id).
  result<history_page> history(std::string const& user, std::string const& conversation_id,
                               history_query const& q) const;
  // One message. Errors: message_not_found (also when expired, hidden for the caller, or
  // not in a conversation of theirs).
  result<client::message> get(std::string const& user, std::string const& message_id) const;

  // Whether `from` may tell `to` (a user id or a bare name of this region) that they are typing:
  // only in a conversation they share. The recipient's full id and the conversation's id, or
  // invalid_field (not a user id) or conversation_not_found (none, also when `to` does not exist). Any thread.
  struct typing_target {
    std::string to;
    std::string conversation_id;
  };
  result<typing_target> typing_between(std::string const& from, std::string const& to) const;

  // The 1:1 conversation id of two users (whether or not they have talked).
  static std::string conversation_of(std::string const& a, std::string const& b);
  // (In a group, by the user's part: never the roster, also for another region's user.)
  bool is_member(std::string const& user, std::string const& conversation_id) const;
  // Whether `a` and `b` may see each other's presence: both have written to the other.
  bool shares_presence(std::string const& a, std::string const& b) const;
  // Users who share presence with `user` (see shares_presence).
  std::vector<std::string> contacts(std::string const& user) const;

  // Groups (node/messages/groups.cpp). Each change is durable, and a conversation_change
  // event in every member's mailbox, before it is answered. For a group homed in another
  // region the change is asked of that region (durably) and answered `queued`. Errors: invalid_field,
  // missing_field, conversation_not_found, not_a_member, forbidden_role,
  // owner_must_hand_over, too_many_groups, user_not_found; per member (`failed`):
  // user_not_found, group_full, too_many_groups, already_member.
  awaitable<result<membership_result>> create_group(std::string owner, group_spec spec);
  awaitable<result<membership_result>> add_members(std::string by, std::string conversation_id,
                                                   std::vector<std::string> users);
  // `user` == `by`: leaving (an owner names a successor). The request's id when the group's
  // home is another region and the request was sent there.
  awaitable<result<std::optional<std::string>>> remove_member(std::string by, std::string conversation_id,
                                                              std::string user, std::optional<std::string> successor);
  awaitable<result<conversation_view>> set_role(std::string by, std::string conversation_id, std::string user,
                                                client::member_role role);
  // A local account was deleted: it goes from every group it is a member of, as a name with
  // no account does (its role passed on first if it was the owner; asked of the home region
  // for a group homed elsewhere), and its push targets and settings go (how many targets:
  // the answer). Errors: internal, store_unavailable (some groups may be done; running it
  // again finishes the rest).
  awaitable<result<std::size_t>> account_deleted(std::string user_id);
  awaitable<result<conversation_view>> update_conversation(std::string by, std::string conversation_id,
                                                           conversation_patch patch);

  // The conversation list, newest activity first, `limit` from after the cursor `before`
  // (node/messages/conversations.cpp). Errors: invalid_field (the cursor).
  result<conversation_page> conversations(std::string const& user, std::size_t limit,
                                          std::optional<std::string> const& before) const;
  // One conversation with its members. Errors: conversation_not_found, not_a_member.
  result<conversation_view> conversation(std::string const& user, std::string const& conversation_id) const;
  // Per-recipient receipts of a message `user` sent. Errors: message_not_found, not_sender.
  result<message_receipts> receipts(std::string const& user, std::string const& message_id) const;
  // The other current members of a group `user` is in (typing), or conversation_not_found.
  result<std::vector<std::string>> group_peers(std::string const& user, std::string const& conversation_id) const;

  // Assets (node/messages/assets.cpp): the records of node/assets' files. Before traffic:
  void set_asset_limits(config::assets_section const& limits);
  // Whether `hash` is stored, whether upload `id` is in progress (committed state, any thread).
  bool asset_exists(std::string const& hash) const;
  bool upload_exists(std::string const& id) const;
  // The hash of `hash`'s thumbnail, or "" (none, or no such asset; committed state).
  std::string asset_thumbnail(std::string const& hash) const;
  // The asset if `user` may download it: its uploader, a current member of a conversation
  // holding a message with it as an attachment, or (a thumbnail) one who may download its
  // original. Errors: asset_not_found (also when not allowed).
  result<asset_view> asset_for(std::string const& user, std::string const& hash) const;
  // Whether `user` may upload `length` more bytes now. Errors: asset_too_large,
  // quota_exceeded (with the numbers).
  // `streaming`: bytes of the user's uploads in one request still arriving (not stored yet).
  result<bool> quota_allows(std::string const& user, std::uint64_t length, std::uint64_t streaming = 0) const;
  // Starts a resumable upload (`streaming` as above). Errors: asset_too_large, quota_exceeded, too_many_uploads.
  awaitable<result<upload_view>> begin_upload(std::string user, upload_view spec, std::uint64_t streaming = 0);
  // An upload of `user`'s, maybe complete. Errors: upload_not_found (another's, expired).
  result<upload_view> upload(std::string const& user, std::string const& id) const;
  // The upload's bytes up to `offset` are durable.
  awaitable<errors::status> advance_upload(std::string id, std::uint64_t offset);
  // Removes an upload's record, its reservation given back; true if it was in progress.
  awaitable<result<bool>> end_upload(std::string id);
  // Records a complete upload (`upload_id`: the resumable upload it completes, whose record
  // names the asset until it expires, its reservation given back, in the same write). The
  // caller holds the hash's claim (node/assets). Errors: quota_exceeded.
  awaitable<result<asset_view>> record_asset(std::string user, new_asset a, std::string upload_id);
  // Hashes whose collection is due at `now_ms` (at most `max`), each with its due entries; and uploads expired.
  std::map<std::string, std::vector<std::string>> assets_due(std::int64_t now_ms, std::size_t max) const;
  std::vector<std::string> uploads_expired(std::int64_t now_ms, std::size_t max) const;
  // Removes the asset if no message refers to it (and its thumbnail with it); drops the
  // due entries of `hash` either way. The caller holds the claim and deletes the blobs.
  awaitable<result<collected_asset>> collect_asset(std::string hash, std::vector<std::string> due, std::int64_t now_ms);
  // Assets of other regions: up to `max` fetches due at `now_ms`; a fetched asset recorded
  // (bytes in place, claim held; `a.thumbnail_hash` is the holder's thumbnail, fetched
  // next); a failed try (`drop`: the holder has no such asset for us, or nobody here refers
  // to it any more; `mismatch`: its bytes did not match their hash) put off or given up.
  std::vector<pending_fetch> fetches_due(std::int64_t now_ms, std::size_t max) const;
  awaitable<errors::status> record_fetched(pending_fetch f, new_asset a);
  awaitable<errors::status> fetch_failed(pending_fetch f, bool drop, bool mismatch = false);
  // For another region's request: the asset if a conversation holding a message with it
  // (or with its original) has members of `region`; else nullopt.
  std::optional<asset_view> asset_for_region(std::string const& region, std::string const& hash) const;
  // Every stored asset's hash and size (petchatctl assets verify), and usage per user.
  std::vector<std::pair<std::string, std::uint64_t>> all_assets() const;
  std::vector<asset_usage> asset_usage_by_user() const;

  // Push targets and the push outbox (push.cpp). The hook is called after each commit that put
  // a message event in the mailbox of a user with push targets (the user, its seq); before traffic.
  void set_push_hook(std::function<void(std::string const& user, std::uint64_t seq)> hook);
  // Adds a target to its device, or replaces the device's target with the same endpoint
  // (Matrix: the same app_id and pushkey), keeping its id. Errors: too_many_push_targets.
  awaitable<result<push_target>> add_push_target(push_target t, push_limits limits);
  // Removes a target of the device (false: none such; with `sent`, only while it is still the
  // registration a push went to), or every target of the device.
  awaitable<result<bool>> remove_push_target(std::string user, std::string device_id, std::string id,
                                             std::optional<push_target> sent = {});
  awaitable<result<std::size_t>> remove_device_push(std::string user, std::string device_id);
  // Every push target, device setting and pending push of a deleted account; how many went.
  awaitable<result<std::size_t>> remove_user_push(std::string user);
  // A target's state after a try: what it was pushed through, when, and its failures. A
  // target removed or registered anew (other keys, gateway) meanwhile is left: false.
  awaitable<result<bool>> push_tried(push_target t);
  // The targets of a user (of one device if given), committed state, any thread.
  std::vector<push_target> push_targets(std::string const& user, std::optional<std::string> const& device = {}) const;
  std::size_t push_target_count() const;
  push_settings push_settings_of(std::string const& user, std::string const& device_id) const;
  // The devices of `user` with push settings of their own (committed state).
  std::vector<std::string> push_settings_devices(std::string const& user) const;
  awaitable<errors::status> set_push_settings(std::string user, std::string device_id, push_settings s);
  // The users with pushes pending (up to `max`, by name, after `after`), or one user's.
  std::vector<push_pending> push_outbox(std::size_t max, std::string const& after = {}) const;
  std::optional<push_pending> pending_push(std::string const& user) const;
  // Erases the user's pending entry if it still ends at `last_seq` (nothing newer came).
  awaitable<errors::status> push_settled(std::string user, std::uint64_t last_seq);

  // Removes expired messages (at most `max` entries, and about `work` keys: 2 per group recipient); returns how many.
  awaitable<std::size_t> sweep_expired(std::size_t max = 10000, std::size_t work = 200'000);
  // Flushes and compacts the store so removed data leaves the disk. Blocking: call off
  // the I/O threads.
  void compact();
  // A consistent copy of the store in `dir` (new, same file system) for a backup: see
  // store::rocks_db::checkpoint_to. Blocking: call off the I/O threads.
  void checkpoint_to(std::filesystem::path const& dir);
  blob_removal_gate& blob_removals();

  void stop();

  // Mailbox events acknowledgements have looked at for receipts so far (once per user).
  std::uint64_t ack_walked_events() const;

  // Estimated live entries per kind of stored record (mailbox, messages, history, ...).
  std::vector<std::pair<std::string, std::uint64_t>> stored_entries() const;
  // When the store was last opened past a damaged write-ahead log (0: never).
  std::int64_t salvaged_at_ms() const;
  // Why the store refuses writes now (a full disk...), empty while it takes them; try_writes
  // writes nothing, which finds out whether they work again (upkeep: each second they fail).
  std::string write_error() const;
  awaitable<void> try_writes();

  // Group commits (WAL fsyncs) done by the message store so far; each one from now on told
  // to `fn` (metrics); the store's size on disk.
  std::uint64_t commits() const;
  void observe_commits(store::commit_observer fn);
  struct disk_use {
    std::uint64_t live_sst_bytes = 0, wal_bytes = 0, pending_compaction_bytes = 0;
  };
  disk_use disk() const;
  struct impl;  // node/messages/detail/service.hpp, shared by the service's translation units

 private:
  std::unique_ptr<impl> impl_;
};

// Pairs of the given region names whose 16-bit hash, which every message id carries to
// name the region that made it, is the same: either of two such regions could make ids
// the other's messages would have (docs/FEDERATION.md, "Signed envelopes").
std::vector<std::pair<std::string, std::string>> region_hash_clashes(std::vector<std::string> const& regions);

}  // namespace petchat::messages
