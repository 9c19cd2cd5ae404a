// The message service's side of federation: the durable outbox the link publishes from,
// and applying inbound envelopes (messages, receipts, deletions) exactly once. Lanes
// (docs/FEDERATION.md): an envelope is applied only if it is the next of its origin's lane,
// in the write that records that, and each origin's stream position; so redeliveries and
// replays have no effect and the order of the origin's commits is kept.
#include "node/messages/detail/asset_records.hpp"
#include "node/messages/detail/group_ops.hpp"
#include "node/messages/detail/lanes.hpp"
#include "node/messages/detail/receipts.hpp"

namespace petchat::messages {
namespace {

using federation::reject_reason;
using service_detail::write_blocking;

void not_waited_for(store::write_outcome) {}

class federated_store final : public federation::local_store {
 public:
  explicit federated_store(message_service::impl& m) : m_(m) {}

  std::uint64_t outbox_start(std::string const& destination) override {
    // The lane counter first: an entry committed after this read has a larger seq, so it
    // is found by the scan or by a later peek, never skipped.
    auto lane = m_.db.get(cf::state, keys::outbound_lane_key(destination));
    std::uint64_t counter = lane ? keys::from_be64(*lane) : 0;
    if (auto confirmed = m_.db.get(cf::state, keys::outbound_confirmed_key(destination)))
      return std::min(keys::from_be64(*confirmed), counter);
    auto first = first_held(destination);
    return first > 0 ? first - 1 : counter;
  }

  std::uint64_t outbox_floor(std::string const& destination) override {
    auto lane = m_.db.get(cf::state, keys::outbound_lane_key(destination));
    auto first = first_held(destination);
    return first > 0 ? first - 1 : (lane ? keys::from_be64(*lane) : 0);
  }

  std::uint64_t outbox_end(std::string const& destination) override {
    auto lane = m_.db.get(cf::state, keys::outbound_lane_key(destination));
    return lane ? keys::from_be64(*lane) : 0;
  }

  std::vector<outgoing> outbox_peek(std::string const& destination, std::uint64_t after, std::size_t limit) override {
    std::vector<outgoing> out;
    m_.db.scan(cf::outbox, keys::outbox_key(destination, after + 1), keys::past_last_of(destination),
               [&](std::string_view key, std::string_view value) {
                 out.push_back({keys::from_be64(keys::after_owner(key, destination)), std::string(value)});
                 return out.size() < limit;
               });
    return out;
  }

  // Not waited for: lost in a crash, the entries after the older position go again (replays there).
  void outbox_confirmed(std::string const& destination, std::uint64_t lane_seq) override {
    store::rocks_db::write_fn fn = [destination, lane_seq](store::rocks_batch& b) {
      b.put(cf::state, keys::outbound_confirmed_key(destination), keys::be64(lane_seq));
      return true;
    };
    m_.db.submit(std::move(fn), not_waited_for, store::rocks_db::durability::lazy);
  }

  // At most this many entries per call, so one call never makes a huge write.
  static constexpr std::size_t forget_at_once = 4096;

  std::uint64_t outbox_forget(std::string const& destination, std::uint64_t floor, std::uint64_t up_to,
                              std::int64_t before_ms) override {
    if (up_to <= floor) return floor;
    std::uint64_t last = std::min<std::uint64_t>(up_to, floor + forget_at_once);
    if (before_ms != std::numeric_limits<std::int64_t>::max()) {
      std::uint64_t older = floor;  // entries are in creation order: stop at the first young one
      m_.db.scan(
          cf::outbox, keys::outbox_key(destination, floor + 1), keys::outbox_key(destination, last + 1),
          [&](std::string_view key, std::string_view value) {
            federation::body body;
            if (body.ParseFromArray(value.data(), static_cast<int>(value.size())) && body.created_at_ms() >= before_ms)
              return false;
            older = keys::from_be64(keys::after_owner(key, destination));
            return true;
          });
      last = older;
    }
    if (last <= floor) return floor;
    store::rocks_db::write_fn fn = [destination, from = floor + 1, last](store::rocks_batch& b) {
      for (std::uint64_t s = from; s <= last; ++s) b.erase(cf::outbox, keys::outbox_key(destination, s));
      return true;
    };
    m_.db.submit(std::move(fn), not_waited_for, store::rocks_db::durability::lazy);
    return last;
  }

  backlog outbox_backlog(std::string const& destination, std::uint64_t after) override {
    return service_detail::outbox_backlog(m_.db, destination, after);
  }

  std::vector<std::string> outbox_destinations() override { return service_detail::outbox_destinations(m_.db); }

  dropped outbox_drop(std::string const& destination) override {
    if (!m_.db.get(cf::state, keys::outbound_lane_key(destination))) return {dropped::outcome::no_lane, 0, {}};
    new_outbound_epoch(destination, 0);  // listed again, the lane starts over above every epoch it had
    return service_detail::drop_outbox(m_.db, m_.regions, destination);
  }

  // The lane's epoch: its own (`fe/<destination>`) or the node's (`fe`: before lanes had their own, after a restore).
  std::uint64_t outbound_epoch(std::string const& destination) override {
    auto node = m_.db.get(cf::state, keys::lane_epoch_key());
    auto own = m_.db.get(cf::state, keys::lane_epoch_key(destination));
    if (node || own) return std::max(node ? keys::from_be64(*node) : 0, own ? keys::from_be64(*own) : 0);
    return new_outbound_epoch({}, 0);
  }

  // Time-ordered (ms << 16 | random), and above anything seen: it only ever grows.
  std::uint64_t new_outbound_epoch(std::string const& destination, std::uint64_t above) override {
    auto epoch = std::make_shared<std::uint64_t>(0);
    std::vector<std::string> lanes;  // a new epoch of every lane is above each lane's own
    if (destination.empty())
      m_.db.scan(cf::state, keys::lane_epoch_key("\x01"), keys::lane_epoch_key("\x7f"),
                 [&](std::string_view key, std::string_view) {
                   lanes.emplace_back(key);
                   return true;
                 });
    auto key = destination.empty() ? keys::lane_epoch_key() : keys::lane_epoch_key(destination);
    store::rocks_db::write_fn fn = [above, epoch, key, destination, lanes](store::rocks_batch& b) {
      std::uint64_t floor = above;
      auto take = [&](std::string const& k) {
        if (auto v = b.get(cf::state, k)) floor = std::max(floor, keys::from_be64(*v));
      };
      take(keys::lane_epoch_key());
      if (!destination.empty()) take(key);
      for (auto const& k : lanes) take(k);
      std::uint64_t e = (static_cast<std::uint64_t>(now_ms()) << 16) | (keys::random_u64() & 0xffff);
      if (e <= floor) e = floor + 1;
      if (e == 0) return false;  // never wraps (the link refuses epochs that could)
      *epoch = e;
      b.put(cf::state, key, keys::be64(e));
      return true;
    };
    if (write_blocking(m_.db, std::move(fn)) != store::write_outcome::committed)
      throw store::rocks_error("cannot store a new lane epoch");
    return *epoch;
  }

  std::map<std::string, lane> inbound_lanes() override {
    std::map<std::string, lane> out;
    m_.db.scan(cf::state, keys::inbound_lanes_first(), keys::inbound_lanes_past_last(),
               [&](std::string_view key, std::string_view value) {
                 if (value.size() == 16)
                   out[std::string(keys::origin_of_inbound_lane(key))] = {keys::from_be64(value.substr(0, 8)),
                                                                          keys::from_be64(value.substr(8))};
                 return true;
               });
    return out;
  }

  std::uint64_t inbound_position(std::string const& origin) override {
    auto v = m_.db.get(cf::state, keys::inbound_position_key(origin));
    if (!v) v = m_.db.get(cf::state, keys::inbound_position_key());
    return v ? keys::from_be64(*v) : 0;
  }

  std::vector<reject_reason> apply(std::vector<inbound> batch) override {
    struct state {
      std::vector<news> heads;
      std::vector<reject_reason> refused;
      bool queued = false;
      std::vector<std::pair<std::string, std::string>> now_shared;  // presence became shared
      std::vector<std::string> joins_taken;                         // given back if it does not commit
      std::vector<std::string> requests_taken;                      // likewise
    };
    auto st = std::make_shared<state>();
    auto items = std::make_shared<std::vector<inbound>>(std::move(batch));
    store::rocks_db::write_fn fn = [this, st, items](store::rocks_batch& b) {
      *st = state{};
      std::map<std::string_view, std::uint64_t> last;  // each origin's, in its stream order
      for (auto const& item : *items) {
        if (item.content) apply_one(b, item, *st);
        last[item.origin] = item.stream_seq;
      }
      for (auto [origin, seq] : last) b.put(cf::state, keys::inbound_position_key(origin), keys::be64(seq));
      return true;
    };
    if (write_blocking(m_.db, std::move(fn)) != store::write_outcome::committed) {
      change_state::give_back_joins(m_, st->joins_taken);
      change_state::give_back_requests(m_, st->requests_taken);
      if (m_.db.write_error().empty()) throw federation::unappliable("an inbound envelope could not be applied");
      throw store::rocks_error("cannot store inbound federation envelopes");
    }
    m_.after_commit(st->heads, st->queued, nullptr, st->now_shared);
    return st->refused;
  }

 private:
  // Lane rules (docs/FEDERATION.md, "Ordering and dedup"). The bundle gives the lane's epoch
  // and up to where the origin knows this region confirmed it (the base). No state for the
  // origin, or a larger epoch: the lane starts at base + 1; a smaller epoch is a replay; within
  // the epoch only the next seq is applied, and a base beyond this region's state (its store
  // went back) moves the lane up to it. A body refused for its content takes its position.
  template <typename State>
  void apply_one(store::rocks_batch& b, inbound const& item, State& st) {
    auto const& body = *item.content;
    if (body.lane_seq() == 0)
      return st.refused.push_back(reject_reason::malformed);  // ephemeral kinds never come through the stream
    if (service_detail::lane_epoch_refused(body.origin(), item.lane_epoch))
      return st.refused.push_back(reject_reason::malformed);
    auto lane = read_lane(b, body.origin());
    std::uint64_t last = lane.seq;
    if (lane.epoch == 0 || item.lane_epoch > lane.epoch) {
      last = item.lane_base;
    } else if (item.lane_epoch < lane.epoch) {
      return st.refused.push_back(reject_reason::replayed);
    } else if (last < item.lane_base) {
      // This region's store went back (restored from a backup): the origin had its lane
      // confirmed further. It still holds its entries after lane_floor: wait for them (the
      // confirmation this region sends makes the origin send them again). What it no
      // longer holds is lost here: skip to the floor, and say so in the lane state, so the
      // confirmation asks for the rest. An origin that does not say its floor: skip to its base.
      auto skip_to = item.lane_floor ? std::max(*item.lane_floor, last) : item.lane_base;
      if (skip_to > last) {
        log::get("federation")
            ->error(
                "the lane from {} skips seqs {}..{}: this store is behind what {} confirmed (restored from a "
                "backup?) and {} no longer holds them",
                body.origin(), last + 1, skip_to, body.origin(), body.origin());
        last = skip_to;
        b.put(cf::state, keys::inbound_lane_key(body.origin()), keys::be64(item.lane_epoch) + keys::be64(last));
      }
    }
    if (body.lane_seq() <= last) return st.refused.push_back(reject_reason::replayed);
    if (body.lane_seq() != last + 1) return st.refused.push_back(reject_reason::out_of_order);
    b.put(cf::state, keys::inbound_lane_key(body.origin()), keys::be64(item.lane_epoch) + keys::be64(body.lane_seq()));
    std::optional<reject_reason> refused = item.refused;
    if (refused) return st.refused.push_back(*refused);
    if (body.has_message())
      refused = body.message().to().empty() ? apply_group_message(b, body, st) : apply_message(b, body, st);
    else if (body.has_group_state() || body.has_group_request())
      refused = apply_group_change(b, body, st);
    else if (body.has_group_request_refused())
      refused = apply_request_refused(m_, b, body, st.heads);
    else if (body.has_receipt())
      refused = apply_receipt(b, body.receipt(), body.quiet(), st);
    else if (body.has_deleted())
      refused = apply_deleted(b, body.deleted(), st);
    else  // a kind this version does not know (a newer origin's): refused, and the lane goes on
      refused = reject_reason::malformed;
    if (refused) st.refused.push_back(*refused);
  }

  template <typename State>
  std::optional<reject_reason> apply_message(store::rocks_batch& b, federation::body const& body, State& st) {
    auto const& msg = body.message();
    auto raw = parse_id(msg.id());
    if (!raw) return reject_reason::malformed;
    // Refused messages get an UNDELIVERABLE receipt, so the sender knows they never arrive.
    auto undeliverable = [&](reject_reason why) {
      client::receipt r;
      r.set_message_id(msg.id());
      r.set_conversation_id(msg.conversation_id());
      r.set_status(client::UNDELIVERABLE);
      r.set_by(msg.to());
      r.set_at_ms(now_ms());
      st.queued |= m_.deliver_receipt(b, msg.from(), r, st.heads);
      return why;
    };
    auto from = ids::parse_user_id(msg.from(), m_.region);
    if (!from || from->str() != msg.from() || msg.client_id().size() > 64) return reject_reason::malformed;
    auto to = ids::parse_user_id(msg.to(), m_.region);
    if (!to || !m_.users.get_profile(to->name)) return undeliverable(reject_reason::unknown_user);
    if (keys::check_body(msg.body(), m_.body_limits())) return undeliverable(reject_reason::too_large);
    if (msg.conversation_id() != keys::direct_conversation_id(msg.from(), msg.to()))
      return undeliverable(reject_reason::malformed);
    // Ids are made by the sender's region (no region takes or plants one a third region or
    // this one will use), and not dated ahead of this region's clock.
    if (keys::message_id_region_hash(*raw) != keys::region_hash(body.origin()) ||
        ahead_of_clock(keys::message_id_time_ms(*raw), msg.sent_at_ms(), now_ms()))
      return undeliverable(reject_reason::malformed);
    if (auto existing = parse<records::stored_message>(b.get(cf::messages, *raw))) {
      auto const& e = existing->message();
      if (e.from() == msg.from() && e.to() == msg.to() && e.client_id() == msg.client_id())
        return std::nullopt;            // already here
      return reject_reason::malformed;  // an id collision: never overwrite another message
    }
    std::int64_t now = now_ms();
    if (msg.expires_at_ms() <= now) return std::nullopt;  // expired on the way: never served
    // Counted per sending region: one region's made-up senders cannot use up the others'.
    auto contact = msg.to() + '\0' + std::string(ids::region_of(msg.from()));
    if (!b.get(cf::conversations, msg.conversation_id()) && m_.remote_contacts.take(contact, now) > 0)
      return undeliverable(reject_reason::too_many_contacts);
    records::stored_message stored;
    *stored.mutable_message() = msg;
    stored.mutable_message()->DiscardUnknownFields();  // fields this version does not know: not stored
    // This region's retention bounds how long it keeps anything.
    auto latest = now + std::int64_t(m_.options.retention_s) * 1000;
    if (stored.message().expires_at_ms() > latest) stored.mutable_message()->set_expires_at_ms(latest);
    if (message_service::impl::ensure_conversation(b, msg.conversation_id(), msg.from(), msg.to()))
      st.now_shared.emplace_back(msg.from(), msg.to());
    direct_participant(b, msg.to(), msg.conversation_id(), now);  // the conversation list here
    count_message(b, stored, *raw, false);
    records::stored_event e;
    e.set_message_id(*raw);
    st.heads.push_back({msg.to(), m_.append(b, msg.to(), e, stored), e});
    detail::note_remote_attachments(m_, b, *raw, stored);
    message_service::impl::put_message(b, *raw, stored, false);
    return std::nullopt;
  }

  // A group's change: its home's new state (a replica here), or a member's request to home.
  template <typename State>
  std::optional<reject_reason> apply_group_change(store::rocks_batch& b, federation::body const& body, State& st) {
    change_state change;
    std::optional<reject_reason> refused;
    if (body.has_group_state()) {
      refused = apply_group_state(m_, b, body.group_state(), change);
      if (!refused) apply_parked(b, body.group_state().conversation_id(), st);
      if (refused)
        change_state::give_back_joins(m_, change.joins_taken);  // nobody joined
      else
        st.joins_taken.insert(st.joins_taken.end(), change.joins_taken.begin(), change.joins_taken.end());
    } else {
      auto const& r = body.group_request();
      auto c = parse<records::conversation_record>(b.get(cf::conversations, r.conversation_id()));
      change.conversation = r.conversation_id();
      if (!c || home_of(*c, m_.region) != m_.region)
        change.refused = fail(code::conversation_not_found, "no group '" + r.conversation_id() + "' is homed here");
      else
        run_request(m_, b, *c, r, change);
      if (change.refused || change.changes.empty()) {
        change_state::give_back_requests(m_, change.requests_taken);  // it changed nothing
        change_state::give_back_joins(m_, change.joins_taken);
      } else {
        st.requests_taken.insert(st.requests_taken.end(), change.requests_taken.begin(), change.requests_taken.end());
        st.joins_taken.insert(st.joins_taken.end(), change.joins_taken.begin(), change.joins_taken.end());
      }
      if (change.refused) refused = reject_reason::group_request_refused;
      if (auto told = refusal_of(r, change)) {  // the requester hears of it (docs/FEDERATION.md)
        m_.to_outbox(b, body.origin(), std::move(*told));
        change.queued = true;
      }
    }
    for (auto& n : change.heads) st.heads.push_back(std::move(n));
    st.queued |= change.queued;
    return refused;
  }

  // The parked group messages the replica can take now that it has a newer state.
  template <typename State>
  void apply_parked(store::rocks_batch& b, std::string const& conv, State& st) {
    auto c = parse<records::conversation_record>(b.get(cf::conversations, conv));
    if (!c) return;
    for (auto const& parked : unpark_group_messages(b, conv, c->version()))
      if (auto why = apply_group_message(b, parked, st, false))
        log::get("federation")
            ->info("group {}: a parked message from {} was refused: {}", conv, parked.origin(),
                   federation::to_string(*why));
  }

  // A group message from a member of the origin: judged by the replica, stored once, to each local member.
  template <typename State>
  std::optional<reject_reason> apply_group_message(store::rocks_batch& b, federation::body const& body, State& st,
                                                   bool arriving = true) {
    auto const& msg = body.message();
    auto raw = parse_id(msg.id());
    if (!raw || keys::message_id_region_hash(*raw) != keys::region_hash(body.origin()) || msg.client_id().size() > 64 ||
        ahead_of_clock(keys::message_id_time_ms(*raw), msg.sent_at_ms(), now_ms()))
      return reject_reason::malformed;
    auto c = parse<records::conversation_record>(b.get(cf::conversations, msg.conversation_id()));
    if (keys::check_body(msg.body(), m_.body_limits())) return reject_reason::too_large;
    switch (fate_of(b, c, body, arriving, m_.region)) {
      case group_message_fate::refuse:
        return reject_reason::foreign_user;
      case group_message_fate::park:
        if (!park_group_message(b, body, *raw, c)) return reject_reason::foreign_user;
        note_stamp(b, body);
        return std::nullopt;
      case group_message_fate::drop:
        return std::nullopt;
      case group_message_fate::apply:
        if (arriving) note_stamp(b, body);
        break;
    }
    if (auto existing = parse<records::stored_message>(b.get(cf::messages, *raw)))
      return existing->message().from() == msg.from() ? std::nullopt : std::optional(reject_reason::malformed);
    note_group_writer(b, *c, msg.conversation_id(), msg.from(), m_.region, st.now_shared);  // expired or not
    std::int64_t now = now_ms();
    if (msg.expires_at_ms() <= now) return std::nullopt;
    records::stored_message stored;
    *stored.mutable_message() = msg;
    stored.mutable_message()->DiscardUnknownFields();
    auto latest = now + std::int64_t(m_.options.retention_s) * 1000;
    if (msg.expires_at_ms() > latest) stored.mutable_message()->set_expires_at_ms(latest);
    count_message(b, stored, *raw, false);
    records::stored_event e;
    e.set_message_id(*raw);
    records::fanout_record fan;  // this region's members only: their receipts go to the sender's region
    for (auto const& member : c->members()) {
      if (member == msg.from() || !m_.is_local(member)) continue;
      fan.add_recipients(member);
      if (gets_events(*c, member)) st.heads.push_back({member, m_.append_group_entry(b, member, e, fan), e});
    }
    stored.set_recipients(static_cast<std::uint32_t>(fan.recipients_size()));
    b.put(cf::receipts, keys::fanout_key(*raw), fan.SerializeAsString());
    detail::note_remote_attachments(m_, b, *raw, stored);
    message_service::impl::put_message(b, *raw, stored, false);
    return std::nullopt;
  }

  template <typename State>
  std::optional<reject_reason> apply_receipt(store::rocks_batch& b, client::receipt r, bool quiet, State& st) {
    auto raw = parse_id(r.message_id());
    auto sm = raw ? parse<records::stored_message>(b.get(cf::messages, *raw)) : std::nullopt;
    if (!sm) return reject_reason::unknown_message;  // expired or deleted meanwhile, or never sent
    r.set_at_ms(service_detail::plausible_time(r.at_ms(), sm->message().sent_at_ms(), now_ms()));
    if (keys::is_group(sm->message().conversation_id())) {  // a member's receipt on a group message sent here
      auto fan = parse<records::fanout_record>(b.get(cf::receipts, keys::fanout_key(*raw)));
      if (!m_.is_local(sm->message().from()) || !fan ||
          std::find(fan->recipients().begin(), fan->recipients().end(), r.by()) == fan->recipients().end() ||
          (r.status() != client::DELIVERED && r.status() != client::READ))
        return reject_reason::foreign_user;
      group_receipt(m_, b, *raw, *sm, r.by(), r.status(), r.at_ms(), !quiet, st.heads);
      return std::nullopt;
    }
    if (sm->message().to() != r.by() || !m_.is_local(sm->message().from()) ||
        sm->message().conversation_id() != r.conversation_id())
      return reject_reason::foreign_user;
    r = message_service::impl::receipt_for(*sm, r.status(), r.by(), r.at_ms());  // nothing else of theirs
    // UNDELIVERABLE after the message was delivered or read says nothing true; told once.
    bool news = r.status() == client::UNDELIVERABLE && sm->delivered_at_ms() == 0 && sm->read_at_ms() == 0 &&
                sm->undeliverable_at_ms() == 0;
    if (news) {
      sm->set_undeliverable_at_ms(r.at_ms() > 0 ? r.at_ms() : now_ms());
      message_service::impl::update_message(b, *raw, *sm);
    }
    if (r.status() == client::DELIVERED && sm->delivered_at_ms() == 0) {
      // As for a local recipient: the receipt's mailbox entry goes with the message.
      sm->set_delivered_at_ms(r.at_ms());
      m_.deliver_receipt(b, sm->message().from(), r, st.heads, &*sm);
      message_service::impl::update_message(b, *raw, *sm);
      return std::nullopt;
    }
    if (r.status() == client::READ && sm->read_at_ms() == 0) {
      // READ means "up to": the earlier messages to the reader are read too.
      for (auto& read : mark_read(m_, b, sm->message().conversation_id(), r.by(), std::nullopt, *raw, r.at_ms())) {
        if (read.delivered_at_ms() != 0) continue;
        read.set_delivered_at_ms(r.at_ms());
        message_service::impl::update_message(b, parse_id(read.message().id()).value_or(""), read);
      }
      news = true;
    }
    if (!news) return std::nullopt;
    m_.deliver_receipt(b, sm->message().from(), r, st.heads);
    return std::nullopt;
  }

  template <typename State>
  std::optional<reject_reason> apply_deleted(store::rocks_batch& b, client::deleted const& d, State& st) {
    auto raw = parse_id(d.message_id());
    auto sm = raw ? parse<records::stored_message>(b.get(cf::messages, *raw)) : std::nullopt;
    if (!sm) {  // expired already, or still waiting for the group's version here
      if (raw && keys::well_formed_group_id(d.conversation_id())) drop_parked(b, d.conversation_id(), *raw, d.by());
      return std::nullopt;
    }
    auto const& msg = sm->message();
    bool group = keys::is_group(msg.conversation_id());
    if (msg.from() != d.by() || (!group && !m_.is_local(msg.to()))) return reject_reason::foreign_user;
    std::set<std::string> floored;
    m_.erase_message(b, *raw, *sm, false, floored);
    auto e = deletion_of(msg, d.by(), service_detail::plausible_time(d.at_ms(), msg.sent_at_ms(), now_ms()));
    if (group) {  // to this region's members of the group
      auto c = parse<records::conversation_record>(b.get(cf::conversations, msg.conversation_id()));
      if (c) tell_local_members(m_, b, *c, msg.conversation_id(), sm->conversation_seq(), e, st.heads);
      return std::nullopt;
    }
    st.heads.push_back({msg.to(), m_.append(b, msg.to(), e), e});
    return std::nullopt;
  }

  message_service::impl& m_;
  // The lane seq of the oldest entry held for `destination`; 0 when none is.
  std::uint64_t first_held(std::string const& destination) {
    std::uint64_t first = 0;
    m_.db.scan(cf::outbox, keys::outbox_key(destination, 0), keys::past_last_of(destination),
               [&](std::string_view key, std::string_view) {
                 first = keys::from_be64(keys::after_owner(key, destination));
                 return false;
               });
    return first;
  }
};

}  // namespace

federation::local_store& message_service::enable_federation(federation::directory const& regions,
                                                            std::function<void()> on_outbox) {
  impl_->regions = &regions;
  impl_->on_outbox = std::move(on_outbox);
  impl_->fed_store = std::make_unique<federated_store>(*impl_);
  return *impl_->fed_store;
}

}  // namespace petchat::messages
