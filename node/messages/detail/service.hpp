// The message service's state and the helpers its translation units share
// (messages.cpp: the client-facing operations; federated.cpp: the federation side).
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <unordered_map>

#include "base/format/format.hpp"
#include "base/ids/ids.hpp"
#include "base/limits/limits.hpp"
#include "federation/federation.hpp"
#include "node/log/log.hpp"
#include "node/messages/detail/assets.hpp"
#include "node/messages/detail/body_rules.hpp"
#include "node/messages/detail/client_view.hpp"
#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/keys.hpp"
#include "node/messages/detail/limits.hpp"
#include "node/messages/detail/mailbox_runs.hpp"
#include "node/messages/detail/outbox_copies.hpp"
#include "node/messages/detail/push.hpp"
#include "node/messages/detail/send_limiter.hpp"
#include "node/messages/messages.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::messages {
namespace service_detail {

using errors::code;
using errors::fail;
using format::now_ms;
using store::cf;
namespace keys = detail;

// An event appended to a mailbox by a write, reported to the listener after the commit.
struct news {
  std::string user;
  std::uint64_t seq;
  records::stored_event event;
};

}  // namespace service_detail

using namespace service_detail;

struct message_service::impl {
  config::messages_section options;
  config::assets_section assets;  // set before traffic (set_asset_limits)
  std::string region;
  std::uint16_t region_hash;
  users::user_service& users;
  store::rocks_db db;
  blob_removal_gate blob_removals;  // backups against the collector (messages.hpp)
  send_limiter limiter;
  // Others' adds; other regions' contacts; groups made; other regions' group requests here,
  // per requester and per region (group_remote.cpp, run_request).
  limits::rate_buckets joins, remote_contacts, creates, remote_requests, region_requests;
  ws::mailbox_listener* listener = nullptr;  // set before any traffic
  // Mailbox events acknowledgements have walked (petchat_ack_walked_events_total).
  std::atomic<std::uint64_t> scanned_by_acks{0};

  keys::push_users push;  // who has push targets, and the hook (node/messages/push.cpp)

  // Acknowledgements waiting for the queued write that takes them all (node/messages/acks.cpp).
  struct pending_ack {
    std::string user;
    std::string device;
    std::uint64_t seq = 0;
    bool first = true;  // false: a later slice of a long walk (the position is stored)
    boost::asio::any_io_executor ex;
    ack_done done;
    // Set by the write:
    bool beyond = false;  // seq is past the mailbox's head
    bool more = false;    // the walk goes on in the next write
  };
  std::mutex acks_mutex;
  std::vector<pending_ack> acks_waiting;
  // An emptied vector of a finished write, kept for its capacity (a group's thousand acks each time).
  std::vector<pending_ack> acks_spare;
  bool acks_queued = false;  // a write that takes acks_waiting is queued
  void gather_ack(pending_ack a);
  void write_acks(std::optional<pending_ack> alone = std::nullopt);  // alone: that one only

  // Group sends' news, told per member and batch of sends (node/messages/news.cpp).
  std::mutex news_mutex;
  std::vector<std::pair<std::vector<news>, std::shared_ptr<ws::shared_content const>>> news_waiting;
  bool news_flush_queued = false;
  void after_group_send(std::vector<news> heads, client::message const& message, boost::asio::any_io_executor ex);
  void flush_news();

  // Federation (null/empty when standalone). Set before traffic.
  federation::directory const* regions = nullptr;
  std::function<void()> on_outbox;      // outbox entries were committed
  mutable std::string fetch_cursor[2];  // where fetches_due (the fetcher's strand only) goes on: f/, y/
  std::unique_ptr<federation::local_store> fed_store;

  impl(config::messages_section const& o, std::string r, std::filesystem::path const& data_dir, users::user_service& u,
       bool sync, bool salvage)
      : options(o),
        region(std::move(r)),
        region_hash(keys::region_hash(region)),
        users(u),
        db(store::rocks_options{.dir = data_dir / "messages",
                                .max_batch = 1024,
                                .sync = sync,
                                .cached = {cf::state, cf::conversations},
                                // Read back by the acknowledgements after a send (each member's).
                                .recent = {cf::mailbox, cf::messages},
                                // A member's receipt record is there only after a read; a
                                // send's idempotency record (looked up by every send) mostly not.
                                .filtered = {cf::receipts},
                                .table_filtered = {cf::idempotency},
                                .rewritten = {cf::state},  // delivered marks, at every acknowledgement
                                .log = rocksdb_log,
                                .salvage = salvage}),
        limiter(o.max_per_second),
        joins(o.max_joins_per_hour, 3600 * 1000),
        remote_contacts(o.max_remote_contacts_per_hour, 3600 * 1000),
        creates(o.max_groups_created_per_day, 86400 * 1000),
        remote_requests(20 * o.max_per_second, 20 * 1000),
        region_requests(200 * o.max_per_second, 20 * 1000) {}

  // RocksDB's own log, into ours: its routine chatter at debug level (disk.cpp).
  static void rocksdb_log(int severity, std::string const& line);

  // After opening past a damaged write-ahead log (store::rocks_options::salvage): the
  // mailboxes may have gone back, and seqs that devices have already seen would be handed
  // out again for other events. Every mailbox head jumps ahead instead (a gap in the seqs
  // is what a client can cope with), and the salvage is recorded for petchatctl status.
  // Federation copes by itself: a destination ahead of this origin's lanes makes it start
  // a new lane epoch (docs/FEDERATION.md). `current_at_ms`: when the data was last current
  // (a restored backup's time), for a jump past what any mailbox can have taken since.
  void after_salvage(std::int64_t current_at_ms);  // node/messages/salvage.cpp

  // The answer to a write the store did not take: store_unavailable while the store
  // refuses writes (a full disk: see rocks_db::write_error), internal otherwise.
  errors::failure write_failed(std::string const& what) const { return errors::write_failure(what, db.write_error()); }

  keys::body_limits body_limits() const { return {options.max_text_bytes, options.max_content_bytes}; }

  // Tells the listener about a committed event, with its content: live streams that are
  // up to date forward it without reading the store again. A message event carries
  // `content`, which all the events of that message share (null: streams read the store).
  void notify(news const& n, std::shared_ptr<ws::shared_content const> const& content) const {
    if (!listener) return;
    if (n.event.kind_case() == records::stored_event::kMessageId) {
      auto event = content ? std::make_shared<ws::shared_event const>(n.seq, content) : nullptr;
      return listener->notify_mailbox(n.user, n.seq, std::move(event));
    }
    client::event ev;
    ev.set_seq(n.seq);
    if (!to_client_event(n.event, std::nullopt, ev)) return listener->notify_mailbox(n.user, n.seq, nullptr);
    listener->notify_mailbox(n.user, n.seq, std::make_shared<ws::shared_event const>(std::move(ev)));
  }

  // A mailbox's head, the newest seq it has handed out, as the writer knows it. Appends do
  // not write it: the writer remembers it (rocks_batch::remember), and works it out again
  // when it has forgotten it (stored_head).
  std::uint64_t head(store::rocks_batch& b, std::string const& user) const {
    return keys::from_be64(b.recall(cf::state, keys::head_key(user), [&] { return keys::be64(stored_head(user)); }));
  }
  // The committed head: the larger of the mailbox's last seq and its floor (`h/<user>`,
  // written when entries are erased, so that a seq is never reused once its entry is gone).
  // Any thread.
  std::uint64_t stored_head(std::string const& user) const {
    std::uint64_t head = 0;
    if (auto floor = db.get(cf::state, keys::head_key(user))) head = keys::from_be64(*floor);
    db.scan_reverse(cf::mailbox, keys::first_of(user), keys::past_last_of(user),
                    [&](std::string_view key, std::string_view value) {
                      auto last = keys::from_be64(keys::after_owner(key, user)) + keys::run_length(value) - 1;
                      head = std::max(head, last);
                      return false;
                    });
    return head;
  }

  // Appends an event to `user`'s mailbox inside a write; returns its seq. Seqs are never
  // reused. Every entry goes some day, so that mailboxes do not grow without bound: with the
  // message `about` (its own events, receipts about it: the message lists them and its
  // expiry or deletion erases them), or, without one, after the retention period (its own
  // expiry entry).
  std::uint64_t append(store::rocks_batch& b, std::string const& user, records::stored_event const& e,
                       records::stored_message& about) const {
    auto seq = append_entry(b, user, e);
    auto* ref = about.add_mailbox_entries();
    ref->set_user(user);
    ref->set_seq(seq);
    return seq;
  }
  std::uint64_t append(store::rocks_batch& b, std::string const& user, records::stored_event const& e) const {
    auto seq = append_entry(b, user, e);
    expire_later(b, now_ms() + std::int64_t(options.retention_s) * 1000, keys::expiring::mailbox_entry,
                 keys::mailbox_key(user, seq));
    return seq;
  }
  std::uint64_t append_entry(store::rocks_batch& b, std::string const& user, records::stored_event const& e) const {
    std::uint64_t seq = head(b, user) + 1;
    b.put(cf::mailbox, keys::mailbox_key(user, seq), e.SerializeAsString());
    b.remember(cf::state, keys::head_key(user), keys::be64(seq));
    if (e.kind_case() == records::stored_event::kMessageId && push.wants(user)) note_push(b, user, seq);
    return seq;
  }
  // Appends a group message's event to a member's mailbox inside a write, listed in the
  // message's fan-out record `fan`. The member's events of one group commit form one run
  // (keys::max_run at most; detail/mailbox_runs.hpp): the writer's remembered head says
  // where the member's run of this batch starts (head, run start, batch generation).
  std::uint64_t append_group_entry(store::rocks_batch& b, std::string const& user, records::stored_event const& e,
                                   records::fanout_record& fan) const;
  // The push outbox entry of `user`: a message event at `seq` (node/messages/push.cpp).
  static void note_push(store::rocks_batch& b, std::string const& user, std::uint64_t seq);
  // Erases a mailbox entry (`key`: user NUL seq) inside a write. Its mailbox's floor is
  // written first (once per user and write: `floored`), so its seq is never handed out again.
  void erase_mailbox_entry(store::rocks_batch& b, std::string const& key, std::set<std::string>& floored) const {
    if (key.size() <= 9) return;
    std::string user = key.substr(0, key.size() - 9);
    if (floored.insert(user).second) b.put(cf::state, keys::head_key(user), keys::be64(head(b, user)));
    b.erase(cf::mailbox, key);
  }
  // Erases the mailbox event `ref` names: its entry, or its event in a run (the run's key
  // goes with its last event).
  void erase_mailbox_event(store::rocks_batch& b, records::mailbox_ref const& ref,
                           std::set<std::string>& floored) const;

  // A message and its indexes (history, valued with the sender; expiry) are written and
  // erased together, here only. `raw_id`: the stored (binary) id. A remote message's
  // attachment references are note_remote_attachments' (detail/asset_records.hpp).
  static void put_message(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm,
                          bool local = true) {
    b.put(cf::messages, raw_id, sm.SerializeAsString());
    b.put(cf::history, keys::history_key(sm.message().conversation_id(), raw_id), sm.message().from());
    b.put(cf::expiry, keys::expiry_key(sm.message().expires_at_ms(), raw_id), "");
    if (local && sm.message().body().attachments_size() > 0) keys::add_asset_refs(b, raw_id, sm);
  }
  // A stored message's marks changed (delivered, read, hidden): its indexes stay.
  static void update_message(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm) {
    b.put(cf::messages, raw_id, sm.SerializeAsString());
  }
  // Erases a message, its indexes, the mailbox entries (`floored`: see erase_mailbox_entry) and
  // outbox copies it lists. Its idempotency record stays until its expiry (deleted for everyone),
  // and at least min(retention, a day) from the send: a retry is answered, not sent again.
  void erase_message(store::rocks_batch& b, std::string const& raw_id, records::stored_message const& sm, bool expired,
                     std::set<std::string>& floored) const {
    auto const& msg = sm.message();
    b.erase(cf::messages, raw_id);
    b.erase(cf::history, keys::history_key(msg.conversation_id(), raw_id));
    b.erase(cf::expiry, keys::expiry_key(msg.expires_at_ms(), raw_id));
    if (msg.body().attachments_size() > 0)
      keys::release_asset_refs(b, raw_id, sm, now_ms() + std::int64_t(assets.grace_s) * 1000);
    for (auto const& ref : sm.mailbox_entries()) erase_mailbox_event(b, ref, floored);
    keys::withdraw_outbox_copies(b, sm);
    if (keys::is_group(msg.conversation_id())) erase_fanout(b, raw_id, floored);
    if (!sm.owns_idempotency_record()) return;
    auto idem = keys::idempotency_key(msg.from(), msg.client_id());
    auto until = std::max(msg.expires_at_ms(),
                          msg.sent_at_ms() + std::min<std::int64_t>(options.retention_s * 1000LL, 86'400'000));
    if (expired && until <= now_ms()) return b.erase(cf::idempotency, idem);
    expire_later(b, until, keys::expiring::idempotency, idem);
  }

  // A group message's fan-out: its members' mailbox entries and receipts.
  void erase_fanout(store::rocks_batch& b, std::string const& raw_id, std::set<std::string>& floored) const {
    records::fanout_record fan;
    if (auto v = b.get(cf::receipts, keys::fanout_key(raw_id))) fan.ParseFromString(*v);
    for (auto const& ref : fan.mailbox_entries()) erase_mailbox_event(b, ref, floored);
    b.erase(cf::receipts, keys::fanout_key(raw_id));
    if (auto counts = parse<records::receipt_counts>(b.get(cf::receipts, keys::receipt_counts_key(raw_id))))
      for (std::uint32_t n = 1; n <= counts->delivered_batches(); ++n)
        b.erase(cf::receipts, keys::delivered_batch_key(raw_id, n));
    b.erase(cf::receipts, keys::receipt_counts_key(raw_id));
    for (auto const& user : fan.recipients()) b.erase(cf::receipts, keys::receipt_key(raw_id, user));
  }

  // An event of a 1:1 conversation that `from` (a local user) caused: into the mailbox of `to`
  // here, or as `envelope` into the outbox to their region; and into `from`'s mailbox. The
  // entries go with the message `about` (append, outbox_copies.hpp), or after the retention.
  void deliver_to_both(store::rocks_batch& b, std::string const& from, std::string const& to,
                       records::stored_event const& e, federation::body envelope, records::stored_message* about,
                       std::vector<news>& heads, bool& queued) const {
    auto add = [&](std::string const& user) {
      heads.push_back({user, about ? append(b, user, e, *about) : append(b, user, e), e});
    };
    if (is_local(to)) {
      add(to);
    } else if (auto seq = to_outbox(b, std::string(ids::region_of(to)), std::move(envelope)); seq && about) {
      keys::note_outbox_copy(*about, ids::region_of(to), seq);
    }
    queued |= !is_local(to);
    if (to != from) add(from);
  }

  bool is_local(std::string const& user) const { return ids::region_of(user) == region; }

  // Queues a durable federation envelope for `destination` inside a write: the next seq of
  // that lane (returned; 0: not queued), in commit order; published after the commit.
  std::uint64_t to_outbox(store::rocks_batch& b, std::string const& destination, federation::body body) const {
    auto lane_raw = b.get(cf::state, keys::outbound_lane_key(destination));
    // Never to a made-up region (no lane, not listed): nothing would send or forget it.
    if (regions && !lane_raw && !regions->is_remote(destination)) return 0;
    std::uint64_t seq = (lane_raw ? keys::from_be64(*lane_raw) : 0) + 1;
    b.put(cf::state, keys::outbound_lane_key(destination), keys::be64(seq));
    body.set_origin(region);
    body.set_destination(destination);
    body.set_lane_seq(seq);
    body.set_created_at_ms(now_ms());
    b.put(cf::outbox, keys::outbox_key(destination, seq), body.SerializeAsString());
    return seq;
  }

  // A receipt about a message `to` sent: into their mailbox here, or to their region (true).
  // With `about` (the stored message, which the caller then writes), the mailbox entry goes
  // with the message; else after the retention period.
  bool deliver_receipt(store::rocks_batch& b, std::string const& to, client::receipt const& receipt,
                       std::vector<news>& heads, records::stored_message* about = nullptr) const {
    if (!is_local(to)) {
      federation::body body;
      *body.mutable_receipt() = receipt;
      to_outbox(b, std::string(ids::region_of(to)), std::move(body));
      return true;
    }
    records::stored_event r;
    *r.mutable_receipt() = receipt;
    heads.push_back({to, about ? append(b, to, r, *about) : append(b, to, r), r});
    return false;
  }

  // A receipt about `sm` by `by`.
  static client::receipt receipt_for(records::stored_message const& sm, client::receipt_status status,
                                     std::string const& by, std::int64_t at_ms) {
    client::receipt r;
    r.set_message_id(sm.message().id());
    r.set_conversation_id(sm.message().conversation_id());
    r.set_status(status);
    r.set_by(by);
    r.set_at_ms(at_ms);
    return r;
  }

  // Stores a conversation on first contact, with both members' contact entries, and
  // records that `from` has written to `to` (presence is shared only between users who
  // have both written: see shares_presence). True if this write is the one that makes
  // their presence shared: after the commit, each is shown the other's presence.
  static bool ensure_conversation(store::rocks_batch& b, std::string const& conv, std::string const& from,
                                  std::string const& to) {
    auto wrote = keys::wrote_key(from, to);
    bool now_shared = false;
    if (!b.get(cf::conversations, wrote)) {
      b.put(cf::conversations, wrote, "");
      now_shared = from != to && b.get(cf::conversations, keys::wrote_key(to, from)).has_value();
    }
    if (b.get(cf::conversations, conv)) return now_shared;
    records::conversation_record rec;
    rec.add_members(from);
    if (to != from) rec.add_members(to);
    b.put(cf::conversations, conv, rec.SerializeAsString());
    b.put(cf::conversations, keys::contact_key(from, to), conv);
    b.put(cf::conversations, keys::contact_key(to, from), conv);
    return now_shared;
  }

  // Whether `a` and `b` see each other's presence: both have written in their 1:1
  // conversation, or in a group both are members of. A stranger's unsolicited message,
  // or a group someone added them to, does not reveal a user's presence or last-seen
  // time; their own reply (in the group: their first message) does.
  bool shares_presence(std::string const& a, std::string const& b) const {
    if (a == b) return true;
    if (wrote_in(db, a, b) && wrote_in(db, b, a)) return true;
    bool shared = false;  // (a group's record read only where both wrote: not 500 of 20 KB)
    auto both = [&](std::string const& conv) { return wrote_in(db, a, conv) && wrote_in(db, b, conv); };
    for_each_group(
        a, [&](auto const&, auto const& c) { return !(shared = acts_as_member(c, b)); }, both);
    return shared;
  }

  // Calls `fn(id, record)` with each group `user` acts as a member of, until it returns false;
  // groups they left (by their part) and those `pre(id)` refuses are passed over unread.
  template <typename Fn, typename Pre = bool (*)(std::string const&)>
  void for_each_group(
      std::string const& user, Fn&& fn, Pre&& pre = [](std::string const&) { return true; }) const {
    auto owner = keys::participants_owner(user);
    bool local = is_local(user);
    db.scan(cf::conversations, keys::first_of(owner) + "g", keys::past_last_of(owner),
            [&](std::string_view key, std::string_view value) {
              auto conv = std::string(keys::after_owner(key, owner));
              if (!keys::is_group(conv)) return false;  // groups' ids sort after direct ones ('d' < 'g')
              records::participant_record p;
              if (local && p.ParseFromArray(value.data(), static_cast<int>(value.size())) && !p.member()) return true;
              if (!pre(conv)) return true;
              auto c = conversation(conv);
              return !c || !acts_as_member(*c, user) || fn(conv, *c);
            });
  }

  // After a commit: live streams learn of new events, the link of new outbox entries;
  // two users whose presence the write made shared see each other's.
  void after_commit(std::vector<news> const& heads, bool queued, client::message const* message = nullptr,
                    std::vector<std::pair<std::string, std::string>> const& now_shared = {}) const {
    // The message, encoded once for every member's event (the sender's and the recipient's in 1:1).
    auto content = listener && message ? std::make_shared<ws::shared_content const>(*message) : nullptr;
    for (auto const& n : heads) {
      notify(n, content);
      if (n.event.kind_case() == records::stored_event::kMessageId) push.tell(n.user, n.seq);
    }
    if (listener)
      for (auto const& [a, b] : now_shared) listener->presence_shared(a, b);
    if (queued && on_outbox) on_outbox();
  }

  std::optional<records::stored_message> load(std::string const& raw_id) const {
    return parse<records::stored_message>(db.get(cf::messages, raw_id));
  }

  // A stored message as `user` may see it: not expired, not hidden for them.
  // Expired, though the sweep may not have removed it yet: never shown, delivered or read.
  static bool expired(records::stored_message const& m, std::int64_t now) { return m.message().expires_at_ms() <= now; }

  std::optional<client::message> visible(records::stored_message const& m, std::string const& user,
                                         std::int64_t now) const {
    if (expired(m, now) || std::ranges::find(m.hidden_for(), user) != m.hidden_for().end()) return std::nullopt;
    client::message out = m.message();
    out.set_delivered_at_ms(m.delivered_at_ms());
    out.set_read_at_ms(m.read_at_ms());
    return out;
  }

  std::optional<records::conversation_record> conversation(std::string const& id) const {
    if (!keys::well_formed_conversation_id(id)) return std::nullopt;  // never another kind of key
    return parse<records::conversation_record>(db.get(cf::conversations, id));
  }

  // Whether `user` is a member of `conv` now. A local user's part in a group says so (kept
  // in the same writes as the roster) and costs a small record, where the roster is the
  // whole member list: every read mark of a member of a 1,000-member group asks.
  bool member(std::string const& user, std::string const& conv) const {
    if (keys::is_group(conv) && is_local(user)) return member_by_part(user, conv);
    auto c = conversation(conv);
    if (!c) return false;
    return std::find(c->members().begin(), c->members().end(), user) != c->members().end();
  }

  // Whether `user`'s part in `conv` says member; for another region's user, the bare part
  // kept here (note_remote_member), never the roster: what another region asks in bulk
  // (its users' typing, their attachments) must not parse a group's whole member list.
  bool member_by_part(std::string const& user, std::string const& conv) const {
    auto p = parse<records::participant_record>(db.get(cf::conversations, keys::participant_key(user, conv)));
    return p && p->member();
  }

  // Who a send to `conv` goes to: empty for a group (its members, checked in the write), the
  // other member of `from`'s direct conversation if still a recipient (as a send by `to`).
  result<std::string> conversation_target(std::string const& from, std::string const& conv) const {
    if (keys::is_group(conv)) return std::string();
    auto c = conversation(conv);
    if (!c || member_index(*c, from) < 0)
      return fail(code::conversation_not_found, "no conversation '" + conv + "' of yours");
    for (auto const& member : c->members())
      if (member != from) return recipient(member);
    return from;  // a note to self
  }

  // Whether `user` may see the stored message `sm` (history, a single message): a member of
  // its direct conversation, or a group message of the user's membership period (also
  // after they left).
  bool may_see(std::string const& user, records::stored_message const& sm) const {
    auto const& conv = sm.message().conversation_id();
    if (!keys::is_group(conv)) return member(user, conv);
    auto p = parse<records::participant_record>(db.get(cf::conversations, keys::participant_key(user, conv)));
    return p && in_period(*p, sm.conversation_seq());
  }

  // A recipient: an existing user of this region, or any user of a federated region
  // (whose node checks the account and answers UNDELIVERABLE if there is none).
  result<std::string> recipient(std::string const& to) const {
    auto id = ids::parse_user_id(to, region);
    if (!id) return fail(code::invalid_field, "'to' must be a user id (name@region)", "to");
    if (id->region != region) {
      if (regions && regions->is_remote(id->region)) return id->str();
      return fail(code::user_not_found,
                  "no user '" + to + "': region '" + id->region + "' is not federated with this one");
    }
    auto p = users.get_profile(id->name);
    if (!p) return fail(code::user_not_found, "no user '" + to + "'");
    return id->str();
  }
};

// Attachments (node/messages/assets.cpp): before a send's write, each names an asset the
// sender may download and gets the node's facts about it; in the write, each is still there.
std::optional<errors::failure> fill_attachments(message_service::impl const& m, std::string const& from,
                                                client::body& body);
bool attachments_stored(store::rocks_batch& b, client::body const& body);

}  // namespace petchat::messages
