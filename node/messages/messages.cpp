#include "node/messages/messages.hpp"

#include <google/protobuf/util/json_util.h>

#include <boost/asio/this_coro.hpp>

#include "node/async/async.hpp"
#include "node/log/log.hpp"
#include "node/messages/detail/asset_records.hpp"
#include "node/messages/detail/group_ops.hpp"
#include "node/messages/detail/opening.hpp"
#include "node/messages/detail/receipts.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

message_service::message_service(config::messages_section const& options, std::string region,
                                 std::filesystem::path const& data_dir, users::user_service& users, bool sync,
                                 bool salvage, std::int64_t current_at_ms)
    : impl_(std::make_unique<impl>(options, std::move(region), data_dir, users, sync, salvage)) {
  if (salvage) impl_->after_salvage(current_at_ms);
  detail::keep_ids_ahead(*impl_);
  detail::index_conversation_refs(*impl_);
  detail::index_pending_refs(*impl_);
  detail::index_push_targets(*impl_);
}

message_service::~message_service() = default;

void message_service::set_listener(ws::mailbox_listener& listener) {
  impl_->listener = &listener;
}

void message_service::stop() {
  impl_->db.stop();
}

std::string message_service::conversation_of(std::string const& a, std::string const& b) {
  return keys::direct_conversation_id(a, b);
}

namespace {

// What a send must hold before anything is read: each failure is the client's to fix.
std::optional<errors::failure> check_send(client::send const& request, keys::body_limits limits) {
  if (request.client_id().empty()) return fail(code::missing_field, "send.client_id is required", "client_id");
  if (request.client_id().size() > max_client_id || !format::utf8_length(request.client_id()))
    return fail(code::invalid_field, "send.client_id must be 1 to 64 bytes of UTF-8", "client_id");
  if (!request.to().empty() && !request.conversation_id().empty())
    return fail(code::invalid_field, "send takes either to or conversation_id, not both", "to");
  if (request.to().empty() && request.conversation_id().empty())
    return fail(code::missing_field, "send.to (or send.conversation_id) is required", "to");
  if (!request.has_body() ||
      (request.body().text().empty() && !request.body().has_content() && request.body().attachments_size() == 0))
    return fail(code::missing_field, "send.body needs text, content or attachments", "body");
  if (auto bad = keys::check_body(request.body(), limits))
    return fail(bad->too_large ? code::body_too_large : code::invalid_field, bad->message, "body");
  return std::nullopt;
}

// A send as it goes through the writer: the message (its id, time and expiry are taken
// in the write), and what the write did.
struct send_write {
  std::string from, to, conversation;      // `to` empty for a group
  std::uint32_t ttl_s = 0;                 // before the conversation's own ttl_s
  std::optional<errors::failure> refused;  // a group's membership, checked in the write
  client::message message;
  std::optional<records::accepted_record> original;  // an earlier send with this client_id
  std::vector<news> heads;
  bool queued = false;
  // Users whose presence this message made shared (the two of a direct conversation; the
  // sender and each member who had written in a group, at the sender's first message there).
  std::vector<std::pair<std::string, std::string>> now_shared;
};

// The id and the time are taken on the writer, in commit order: the order of the
// conversation's history (ids) is the order of the mailboxes (seqs). A conversation's own
// ttl_s caps the send's.
std::string stamp(message_service::impl const& m, send_write& st, std::uint32_t conversation_ttl_s) {
  std::string raw_id = keys::new_message_id(m.region_hash);
  std::int64_t now = keys::message_id_time_ms(raw_id);
  std::uint32_t ttl = conversation_ttl_s ? std::min(st.ttl_s, conversation_ttl_s) : st.ttl_s;
  st.message.set_id(print_id(raw_id));
  st.message.set_sent_at_ms(now);
  st.message.set_expires_at_ms(now + std::int64_t(ttl) * 1000);
  return raw_id;
}

// A group message: stored once, one mailbox entry per member (the sender's included),
// listed in its fan-out record. The sender must be a member now, in this write, so that a
// removal and a send are in one order.
bool write_group_send(message_service::impl const& m, store::rocks_batch& b, send_write& st,
                      records::stored_message& stored, std::string& raw_id) {
  auto conv = load_conversation(b, st.conversation);
  if (!conv || !conv->group() || !acts_as_member(*conv, st.from)) {
    bool former = conv && conv->group() && load_participant(b, st.from, st.conversation);
    st.refused = former ? fail(code::not_a_member, "you are no longer a member of this conversation")
                        : fail(code::conversation_not_found, "no conversation '" + st.conversation + "' of yours");
    return false;
  }
  raw_id = stamp(m, st, conv->ttl_s());
  *stored.mutable_message() = st.message;
  count_message(b, stored, raw_id, true);
  records::stored_event e;
  e.set_message_id(raw_id);
  records::fanout_record fan;
  std::set<std::string> regions;  // other regions with members: one envelope each
  for (auto const& member : conv->members()) {
    if (member != st.from) fan.add_recipients(member);
    if (!m.is_local(member)) {
      regions.emplace(ids::region_of(member));
      continue;
    }
    if (!gets_events(*conv, member)) continue;  // a name with no account, until home removes it
    st.heads.push_back({member, m.append_group_entry(b, member, e, fan), e});
  }
  note_group_writer(b, *conv, st.conversation, st.from, m.region, st.now_shared);
  for (auto const& region : regions) {
    federation::body envelope;
    *envelope.mutable_message() = st.message;
    envelope.set_group_version(conv->version());
    if (auto seq = m.to_outbox(b, region, std::move(envelope))) keys::note_outbox_copy(stored, region, seq);
    st.queued = true;
  }
  stored.set_recipients(static_cast<std::uint32_t>(fan.recipients_size()));
  b.put(cf::receipts, keys::fanout_key(raw_id), fan.SerializeAsString());
  return true;
}

// A direct message: the conversation on first contact, both mailboxes (or the outbox).
void write_direct_send(message_service::impl const& m, store::rocks_batch& b, send_write& st,
                       records::stored_message& stored, std::string& raw_id) {
  if (message_service::impl::ensure_conversation(b, st.conversation, st.from, st.to))
    st.now_shared.emplace_back(st.from, st.to);
  auto conv = parse<records::conversation_record>(b.get(cf::conversations, st.conversation));
  raw_id = stamp(m, st, conv ? conv->ttl_s() : 0);
  *stored.mutable_message() = st.message;
  direct_participant(b, st.from, st.conversation, st.message.sent_at_ms());
  if (m.is_local(st.to)) direct_participant(b, st.to, st.conversation, st.message.sent_at_ms());
  count_message(b, stored, raw_id, true);
  records::stored_event e;
  e.set_message_id(raw_id);
  federation::body envelope;  // only a recipient of another region needs it
  if (!m.is_local(st.to)) *envelope.mutable_message() = st.message;
  // The mailbox entries and the idempotency record go when the message goes: the message
  // lists them, and its one expiry entry stands for all of them.
  m.deliver_to_both(b, st.from, st.to, e, std::move(envelope), &stored, st.heads, st.queued);
}

// Inside the write: the message, its indexes, the mailboxes (or the outbox), the
// idempotency record. False (nothing written) if the client_id was used already, or the
// sender may not send to the group.
bool write_send(message_service::impl const& m, store::rocks_batch& b, send_write& st) {
  st.heads.clear();
  st.queued = false;
  st.now_shared.clear();
  st.refused.reset();
  auto idem = keys::idempotency_key(st.from, st.message.client_id());
  if (auto prior = parse<records::accepted_record>(b.get(cf::idempotency, idem))) {
    st.original = *prior;
    return false;
  }
  if (!attachments_stored(b, st.message.body())) {
    st.refused = fail(code::asset_not_found, "an attachment's asset is gone", "body");
    return false;
  }
  records::stored_message stored;
  std::string raw_id;
  if (st.to.empty()) {
    if (!write_group_send(m, b, st, stored, raw_id)) return false;
  } else {
    write_direct_send(m, b, st, stored, raw_id);
  }
  stored.set_owns_idempotency_record(true);
  message_service::impl::put_message(b, raw_id, stored);
  records::accepted_record a;
  a.set_message_id(raw_id);
  a.set_conversation_id(st.conversation);
  a.set_sent_at_ms(st.message.sent_at_ms());
  a.set_expires_at_ms(st.message.expires_at_ms());
  b.put(cf::idempotency, idem, a.SerializeAsString());
  return true;
}

// The answer to a retry: the original acceptance, marked as a duplicate.
client::accepted accepted_again(records::accepted_record const& original, std::string const& client_id) {
  client::accepted acc;
  acc.set_client_id(client_id);
  acc.set_message_id(print_id(original.message_id()));
  acc.set_conversation_id(original.conversation_id());
  acc.set_sent_at_ms(original.sent_at_ms());
  acc.set_expires_at_ms(original.expires_at_ms());
  acc.set_duplicate(true);
  return acc;
}

}  // namespace

awaitable<result<client::accepted>> message_service::send(std::string from, client::send request) {
  auto& m = *impl_;
  if (auto bad = check_send(request, m.body_limits())) co_return *bad;
  // A retry of an accepted send gets its acceptance whatever changed since (the sender's
  // rate, the recipient's account), and costs no rate: the client can stop retrying. The
  // write finds it (and the token it took is given back); a send that is refused first
  // looks for its earlier acceptance before it is told why.
  auto accepted_before = [&]() -> std::optional<client::accepted> {
    auto prior = m.db.get(cf::idempotency, keys::idempotency_key(from, request.client_id()));
    if (auto record = parse<records::accepted_record>(prior)) return accepted_again(*record, request.client_id());
    return std::nullopt;
  };
  auto to = request.to().empty() ? m.conversation_target(from, request.conversation_id()) : m.recipient(request.to());
  if (!to) {
    if (auto again = accepted_before()) co_return *again;
    co_return to.error();
  }
  if (auto limited = m.limiter.charge(from)) {
    if (auto again = accepted_before()) co_return *again;
    co_return *limited;
  }

  auto st = std::make_shared<send_write>();
  st->from = from;
  st->to = *to;
  st->conversation = to->empty() ? request.conversation_id() : keys::direct_conversation_id(from, *to);
  st->ttl_s = request.ttl_s() == 0 ? m.options.retention_s : std::min(request.ttl_s(), m.options.retention_s);
  auto& msg = st->message;
  msg.set_conversation_id(st->conversation);
  msg.set_from(from);
  msg.set_to(*to);
  msg.set_client_id(request.client_id());
  *msg.mutable_body() = std::move(*request.mutable_body());
  msg.mutable_body()->DiscardUnknownFields();  // not stored nor passed on: only what was checked
  if (msg.body().attachments_size() > 0) {
    if (auto bad = fill_attachments(m, from, *msg.mutable_body())) {
      if (auto again = accepted_before()) co_return *again;
      co_return *bad;
    }
  }
  store::rocks_db::write_fn mutation = [&m, st](store::rocks_batch& b) { return write_send(m, b, *st); };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) {
    // Not the sender's doing: the token goes back. A retry of a send committed before the
    // store began to fail is answered from that commit (what this write saw is not
    // committed), or the client would give up on a message that was stored.
    m.limiter.refund(from);
    if (auto again = accepted_before()) co_return *again;
    co_return m.write_failed("the message could not be stored");
  }
  if (st->refused) co_return *st->refused;
  if (st->original) {
    m.limiter.refund(from);
    co_return accepted_again(*st->original, msg.client_id());
  }
  if (keys::is_group(st->conversation)) {
    auto ex = co_await boost::asio::this_coro::executor;
    m.after_group_send(std::move(st->heads), msg, ex);
    m.after_commit({}, st->queued, nullptr, st->now_shared);  // the outbox, presence now shared
  } else {
    m.after_commit(st->heads, st->queued, &msg, st->now_shared);
  }
  client::accepted acc;
  acc.set_client_id(msg.client_id());
  acc.set_message_id(msg.id());
  acc.set_conversation_id(st->conversation);
  acc.set_sent_at_ms(msg.sent_at_ms());
  acc.set_expires_at_ms(msg.expires_at_ms());
  co_return acc;
}

namespace {

// A key as a log line may hold it: printable bytes as they are, others as \xNN.
std::string shown(std::string_view key) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : key) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      out += "\\x";
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

// Removes what the expiry entry `key` names; true if that was a message.
bool expire_one(message_service::impl& m, store::rocks_batch& b, std::string const& key, std::string const& kind,
                std::set<std::string>& floored, std::size_t& work) {
  b.erase(cf::expiry, key);
  std::string target = keys::expiry_target(key, kind);
  if (keys::expires(kind, keys::expiring::mailbox_entry)) {
    m.erase_mailbox_entry(b, target, floored);
    return false;
  }
  if (keys::expires(kind, keys::expiring::idempotency)) {
    b.erase(cf::idempotency, target);
    return false;
  }
  if (keys::expires(kind, keys::expiring::shared_change)) {
    b.erase(cf::conversations, target);
    return false;
  }
  if (keys::expires(kind, keys::expiring::former_member)) {
    forget_former_member(b, m.db, target, now_ms(), std::int64_t(m.options.retention_s) * 1000);
    return false;
  }
  auto sm = parse<records::stored_message>(b.get(cf::messages, target));
  if (!sm) return false;
  work += 2 * std::size_t(sm->recipients());
  m.erase_message(b, target, *sm, true, floored);  // (its expiry entry is this one)
  return true;
}

}  // namespace

awaitable<std::size_t> message_service::sweep_expired(std::size_t max, std::size_t max_work) {
  auto& m = *impl_;
  std::vector<std::pair<std::string, std::string>> expired;  // expiry key, value (its kind)
  m.db.scan(cf::expiry, "", keys::expiry_due_before(now_ms()), [&](std::string_view key, std::string_view value) {
    expired.emplace_back(key, value);
    return expired.size() < max;
  });
  if (expired.empty()) co_return 0;
  auto count = std::make_shared<std::size_t>(0);
  store::rocks_db::write_fn mutation = [&m, expired, count, max_work](store::rocks_batch& b) {
    *count = 0;
    std::set<std::string> floored;  // mailboxes whose floor this write has set
    // Bounded: after a long stop, 10,000 messages of 1,000-member groups would be one write
    // of 20 million keys every send waits behind. The rest waits (reads skip it already).
    std::size_t work = 0;
    for (auto const& [key, kind] : expired) {
      if (work++ >= max_work) break;
      bool erased_message = false;
      // Each entry alone: one that cannot be done (a record the store cannot read) is
      // undone and skipped, and does not stop the expiry of every other.
      auto error = b.attempt([&] { erased_message = expire_one(m, b, key, kind, floored, work); });
      if (!error) {
        if (erased_message) ++*count;
        continue;
      }
      // Tried again in an hour (a read error may pass; a damaged record is logged each hour
      // until it is repaired), its place taken by those due after it meanwhile.
      floored.clear();  // the undone part may have set a floor; later ones set it again
      b.erase(cf::expiry, key);
      if (key.size() > 8)  // (a key too short to name anything is only erased)
        b.put(cf::expiry, keys::be64(static_cast<std::uint64_t>(now_ms() + 3600 * 1000)) + key.substr(8), kind);
      log::get("messages")
          ->error("the expiry sweep could not remove {} (tried again in an hour): {}", shown(key), *error);
    }
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome == store::write_outcome::failed) {
    log::get("messages")->error("the expiry sweep could not write; expired data stays until the next sweep");
    co_return 0;
  }
  co_return *count;
}

std::vector<std::pair<std::string, std::uint64_t>> message_service::stored_entries() const {
  auto& db = impl_->db;
  return {{"mailbox", db.estimated_keys(cf::mailbox)},   {"messages", db.estimated_keys(cf::messages)},
          {"history", db.estimated_keys(cf::history)},   {"idempotency", db.estimated_keys(cf::idempotency)},
          {"receipts", db.estimated_keys(cf::receipts)}, {"expiry", db.estimated_keys(cf::expiry)}};
}

std::int64_t message_service::salvaged_at_ms() const {
  auto v = impl_->db.get(cf::state, keys::salvaged_key());
  return v ? static_cast<std::int64_t>(keys::from_be64(*v)) : 0;
}

std::string message_service::write_error() const {
  return impl_->db.write_error();
}

awaitable<void> message_service::try_writes() {
  // Rolled back, so nothing to make durable; while writes fail the writer writes the empty
  // batch all the same (store/rocks: a write is what finds out they work again).
  store::rocks_db::write_fn nothing = [](store::rocks_batch&) { return false; };
  co_await async::write(impl_->db, std::move(nothing));
}

std::uint64_t message_service::ack_walked_events() const {
  return impl_->scanned_by_acks.load();
}

std::uint64_t message_service::commits() const {
  return impl_->db.commits();
}

void message_service::observe_commits(store::commit_observer fn) {
  impl_->db.observe_commits(std::move(fn));
}

message_service::disk_use message_service::disk() const {
  auto d = impl_->db.disk();
  return {d.live_sst_bytes, d.wal_bytes, d.pending_compaction_bytes};
}

}  // namespace petchat::messages
