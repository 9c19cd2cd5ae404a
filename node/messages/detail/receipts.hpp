// Receipts inside a write: DELIVERED from acknowledgements (deliver_range), READ from read
// marks (mark_read in direct conversations, mark_read_group in groups), and the per-member
// receipts and counts of group messages (group_receipt). Shared by messages.cpp and
// federated.cpp.
#pragma once

#include <set>
#include <unordered_map>

#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/delivered_mark.hpp"
#include "node/messages/detail/service.hpp"

namespace petchat::messages::service_detail {

using impl = message_service::impl;

// A group message's receipt counts as the batch has them (none yet: zeros).
inline records::receipt_counts load_counts(store::rocks_batch& b, std::string const& raw_id) {
  return parse<records::receipt_counts>(b.get(cf::receipts, keys::receipt_counts_key(raw_id)))
      .value_or(records::receipt_counts{});
}

// What one gathered write of acknowledgements keeps between them (see acks.cpp): the group
// messages it has read (an acknowledgement never changes one), the receipt counts it has
// changed, and the members it delivered each message to, written once when it ends
// (`write_counts`): the counts instead of read, parsed and written again by each member's
// acknowledgement, and one delivered_batch per message instead of a receipt record per
// member (in a large group, the per-member records were a third of the keys a delivery
// wrote).
struct ack_memo {
  std::unordered_map<std::string, records::stored_message> group_messages;
  std::unordered_map<std::string, records::receipt_counts> counts;
  std::unordered_map<std::string, records::delivered_batch> delivered;

  // The message's counts as this write has them (read from the batch the first time).
  records::receipt_counts& counts_of(store::rocks_batch& b, std::string const& raw_id) {
    auto [it, fresh] = counts.try_emplace(raw_id);
    if (fresh) it->second = load_counts(b, raw_id);
    return it->second;
  }
  // `member`'s acknowledgement delivered the message `raw_id` at `now`.
  void delivered_to(std::string const& raw_id, std::string const& member, std::int64_t now) {
    auto& batch = delivered[raw_id];
    if (batch.members().empty()) batch.set_at_ms(now);
    batch.add_members(member);
  }
  // Writes each message's delivered_batch, then every message's counts as they stand
  // (once per message and gathered write).
  void write_counts(store::rocks_batch& b) {
    for (auto const& [id, batch] : delivered) {
      auto& c = counts_of(b, id);
      c.set_delivered_batches(c.delivered_batches() + 1);
      b.put(cf::receipts, keys::delivered_batch_key(id, c.delivered_batches()), batch.SerializeAsString());
    }
    for (auto const& [id, c] : counts) b.put_last(cf::receipts, keys::receipt_counts_key(id), c.SerializeAsString());
  }
};

// True if the local member `member` got the group message `sm` delivered by an
// acknowledgement (which records it in a delivered_batch, not in a receipt record): their
// acknowledgements have reached its position in the group (delivered_mark). One read of the
// member's mark, whatever the group's size. For a recipient of the message only.
inline bool delivered_by_ack(impl const& m, store::rocks_batch& b, records::stored_message const& sm,
                             std::string const& member) {
  if (!m.is_local(member) || sm.conversation_seq() == 0) return false;
  return delivered_mark(b, member).position(sm.message().conversation_id()) >= sm.conversation_seq();
}

// `member` acknowledged (DELIVERED) or read (READ: delivered too) the group message `sm`:
// their receipt and the message's counts, once each. The sender is told per member in
// groups of up to options.group_receipt_events_max_members recipients, else by count
// receipts when a count reaches a power of two or every recipient. A READ is told only
// when `tell_read` (the newest message of its sender that a read covers stands for the
// earlier ones, as in direct conversations). A sender of another region is sent every
// change per member, the READs that are not told marked `quiet` (their region applies these
// rules); true if that went to the outbox.
// `none_yet`: the caller knows the member has no receipt record for it (not read), and
// that no acknowledgement delivered it yet. `memo`: the counts are kept there (the caller
// writes them), not written here, and so is the member's delivery when `none_yet`.
// `known`: the member's receipt record as the caller has just read it (none: nullopt), not
// read again.
inline bool group_receipt(impl const& m, store::rocks_batch& b, std::string const& raw_id,
                          records::stored_message const& sm, std::string const& member, client::receipt_status status,
                          std::int64_t now, bool tell_read, std::vector<news>& heads, bool none_yet = false,
                          ack_memo* memo = nullptr, std::optional<records::receipt_record> const* known = nullptr) {
  auto key = keys::receipt_key(raw_id, member);
  auto mine = none_yet ? records::receipt_record{}
              : known  ? known->value_or(records::receipt_record{})
                       : parse<records::receipt_record>(b.get(cf::receipts, key)).value_or(records::receipt_record{});
  records::receipt_counts own;
  auto& counts = memo ? memo->counts_of(b, raw_id) : (own = load_counts(b, raw_id));
  bool delivered_now = mine.delivered_at_ms() == 0 && (none_yet || !delivered_by_ack(m, b, sm, member));
  bool read_now = status == client::READ && mine.read_at_ms() == 0;
  if (!delivered_now && !read_now) return false;
  if (delivered_now) {
    mine.set_delivered_at_ms(now);
    counts.set_delivered(counts.delivered() + 1);
  }
  if (read_now) {
    mine.set_read_at_ms(now);
    counts.set_read(counts.read() + 1);
  }
  if (memo && none_yet && !read_now)
    memo->delivered_to(raw_id, member, now);
  else
    b.put(cf::receipts, key, mine.SerializeAsString());
  if (!memo) b.put_last(cf::receipts, keys::receipt_counts_key(raw_id), counts.SerializeAsString());
  if (!m.is_local(sm.message().from())) {
    for (auto s : {client::DELIVERED, client::READ}) {
      if (!((s == client::DELIVERED && delivered_now) || (s == client::READ && read_now))) continue;
      federation::body body;
      *body.mutable_receipt() = impl::receipt_for(sm, s, member, now);
      body.set_quiet(s == client::READ && !tell_read);
      m.to_outbox(b, std::string(ids::region_of(sm.message().from())), std::move(body));
    }
    return true;
  }
  bool each = sm.recipients() <= m.options.group_receipt_events_max_members;
  auto milestone = [&](std::uint32_t n) { return n == sm.recipients() || (n & (n - 1)) == 0; };
  // A sender gone from the group keeps the counts (GET …/receipts) but is told nothing
  // live: their removal was their last event of the group.
  std::optional<bool> still_member;
  auto tell = [&](client::receipt_status s) {
    if (!still_member) {
      auto p = load_participant(b, sm.message().from(), sm.message().conversation_id());
      still_member = p && p->member();
    }
    if (!*still_member) return;
    auto r = impl::receipt_for(sm, s, each ? member : std::string(), now);
    if (!each) {
      r.set_recipients(sm.recipients());
      r.set_delivered_count(counts.delivered());
      r.set_read_count(counts.read());
    }
    m.deliver_receipt(b, sm.message().from(), r, heads);
  };
  if (delivered_now && (each || milestone(counts.delivered()))) tell(client::DELIVERED);
  if (read_now && tell_read && (each || milestone(counts.read()))) tell(client::READ);
  return false;
}

// The group message `sm` (raw id `id`) reached `member` by their acknowledgement: their
// DELIVERED receipt, and their position in the group moves to it (`mark`, after the receipt,
// which asks whether an acknowledgement delivered it before). A member's receipt record
// exists only if a read mark covered the message first: none while their read mark is
// before it (no read of the store), and then the delivery goes into the write's
// delivered_batch for the message (ack_memo).
inline bool deliver_group(impl& m, store::rocks_batch& b, std::string const& id, records::stored_message const& sm,
                          std::string const& member, std::int64_t now, std::vector<news>& heads, ack_memo& memo,
                          delivered_mark& mark) {
  bool queued = false;
  if (sm.message().from() != member) {
    auto read = b.get(cf::state, keys::read_key(sm.message().conversation_id(), member));
    bool none_yet = !read || *read < id;
    queued = group_receipt(m, b, id, sm, member, client::DELIVERED, now, false, heads, none_yet, &memo);
  }
  if (sm.conversation_seq() != 0) mark.advance(sm.message().conversation_id(), sm.conversation_seq());
  return queued;
}

// Inside an acknowledgement's write: the messages to `user` among the mailbox events
// (after, upto] get their DELIVERED receipt, once per message and recipient.
inline void deliver_range(impl& m, store::rocks_batch& b, std::string const& user, std::uint64_t after,
                          std::uint64_t upto, std::vector<news>& heads, bool& queued, ack_memo& memo,
                          delivered_mark& mark) {
  std::vector<std::string> ids;
  std::uint64_t ended_inside = 0;  // the entry the walk ended inside, if it did
  // The message ids of the events of the entry at `first` from `from` to `upto`; returns
  // the seq after the last one it looked at.
  auto take = [&](std::uint64_t first, std::string_view value, std::uint64_t from) {
    std::uint64_t end = first + 1;
    keys::each_run_event(first, value, [&](std::uint64_t seq, records::stored_event const& e) {
      end = seq + 1;
      if (seq > upto) {
        ended_inside = first;
        return false;
      }
      if (seq >= from && e.has_message_id()) ids.push_back(e.message_id());
      return true;
    });
    return end;
  };
  // A device acknowledges as events arrive, so the stretch is mostly one or a few entries
  // (runs, detail/mailbox_runs.hpp) that start where the previous acknowledgement ended,
  // or inside the run it ended in (the mark says where that starts): point reads (which
  // also see this batch's writes) cost less than opening an iterator. Where no entry
  // starts (inside a run, or erased) the rest is scanned from where a run holding it can
  // start.
  constexpr int point_reads_up_to = 8;
  std::uint64_t next = after + 1;
  std::uint64_t at = mark.next_entry();
  if (at == 0 || at > next || next - at >= keys::max_run) at = next;
  for (int reads = 0; next <= upto && reads < point_reads_up_to; ++reads) {
    auto v = b.get(cf::mailbox, keys::mailbox_key(user, at));
    if (!v) break;
    next = std::max(next, take(at, *v, next));
    at = next;
  }
  if (next <= upto) {
    m.db.scan(cf::mailbox, keys::mailbox_key(user, keys::earliest_run_start(next)), keys::mailbox_key(user, upto + 1),
              [&](std::string_view key, std::string_view value) {
                take(keys::from_be64(keys::after_owner(key, user)), value, next);
                return true;
              });
  }
  mark.set_next_entry(ended_inside);
  std::int64_t now = now_ms();
  for (auto const& id : ids) {
    if (auto it = memo.group_messages.find(id); it != memo.group_messages.end()) {
      queued |= deliver_group(m, b, id, it->second, user, now, heads, memo, mark);
      continue;
    }
    auto sm = parse<records::stored_message>(b.get(cf::messages, id));
    // Expired before the sweep took it: the stream skipped it, so it was never delivered.
    if (!sm || impl::expired(*sm, now)) continue;
    if (keys::is_group(sm->message().conversation_id())) {
      auto const& kept = memo.group_messages.emplace(id, std::move(*sm)).first->second;
      queued |= deliver_group(m, b, id, kept, user, now, heads, memo, mark);
      continue;
    }
    if (sm->message().from() == user) continue;
    if (sm->message().to() != user || sm->delivered_at_ms() != 0) continue;
    sm->set_delivered_at_ms(now);
    queued |=
        m.deliver_receipt(b, sm->message().from(), impl::receipt_for(*sm, client::DELIVERED, user, now), heads, &*sm);
    impl::update_message(b, id, *sm);
  }
}

// Whether the history entry whose value is `sender` is `user`'s own message: known
// without loading the message (entries written by earlier versions are empty: unknown).
inline bool known_own(std::string_view sender, std::string const& user) {
  return !sender.empty() && sender == user;
}

// Where a read's walk back from its mark ends: past the reader's previous mark `prev` (a
// raw id, none if none), whose read covered what was there up to it then. Without this
// bound a reader with many messages of their own after their mark made every read walk
// max_read_walk messages on the writer (the walk does not stop at their own). A message
// of another region that arrives late with an id below the mark is not marked read by a
// later read (it shows as read on the reader's devices, below their mark; its sender gets
// no READ for it).
inline std::string read_walk_floor(std::string const& conv, std::optional<std::string> const& prev) {
  return prev ? keys::successor(keys::history_key(conv, *prev)) : keys::first_of(conv);
}

// Marks the messages `reader` received in the direct conversation `conv`, after their
// previous mark `prev` up to and including `upto` (raw ids), as read at `at_ms`, newest
// first. Reads only move forward, so the walk stops at the first message already read,
// and after loading max_read_walk messages or passing max_read_walk_own of the reader's
// own (older ones stay unread in history; the READ receipt still stands for them).
// Returns the messages newly marked, newest first, as stored after the change.
inline std::vector<records::stored_message> mark_read(impl const& m, store::rocks_batch& b, std::string const& conv,
                                                      std::string const& reader, std::optional<std::string> const& prev,
                                                      std::string const& upto, std::int64_t at_ms) {
  std::vector<records::stored_message> marked;
  std::size_t visited = 0, own = 0;  // the reader's own messages count too: the walk is bounded
  m.db.scan_reverse(cf::history, read_walk_floor(conv, prev), keys::successor(keys::history_key(conv, upto)),
                    [&](std::string_view key, std::string_view sender) {
                      if (known_own(sender, reader)) return ++own <= max_read_walk_own;
                      if (++visited > max_read_walk) return false;
                      auto id = std::string(keys::after_owner(key, conv));
                      auto sm = parse<records::stored_message>(b.get(cf::messages, id));
                      if (!sm || sm->message().to() != reader || sm->message().from() == reader) return true;
                      if (impl::expired(*sm, at_ms)) return true;  // never shown: neither delivered nor read
                      if (sm->read_at_ms() != 0) return false;
                      sm->set_read_at_ms(at_ms);
                      impl::update_message(b, id, *sm);
                      marked.push_back(std::move(*sm));
                      return true;
                    });
  return marked;
}

// The same in a group, for a reader whose part is `p`: each message of the reader's
// membership period up to `upto` that they had not read gets its READ (and DELIVERED if
// it had none), oldest first, the newest of each sender standing for the earlier ones.
inline bool mark_read_group(impl const& m, store::rocks_batch& b, std::string const& conv, std::string const& reader,
                            records::participant_record const& p, std::optional<std::string> const& prev,
                            std::string const& upto, std::int64_t at_ms, std::vector<news>& heads) {
  struct unread_message {
    std::string id;
    records::stored_message sm;
    std::optional<records::receipt_record> mine;
  };
  std::vector<unread_message> unread;  // newest first
  std::size_t visited = 0, own = 0;
  m.db.scan_reverse(cf::history, read_walk_floor(conv, prev), keys::successor(keys::history_key(conv, upto)),
                    [&](std::string_view key, std::string_view sender) {
                      if (known_own(sender, reader)) return ++own <= max_read_walk_own;
                      if (++visited > max_read_walk) return false;
                      auto id = std::string(keys::after_owner(key, conv));
                      auto sm = parse<records::stored_message>(b.get(cf::messages, id));
                      if (!sm) return true;
                      if (sm->conversation_seq() <= p.visible_after()) return false;
                      if (impl::expired(*sm, at_ms)) return true;  // never shown: neither delivered nor read
                      if (!in_period(p, sm->conversation_seq()) || sm->message().from() == reader) return true;
                      // Shown as history from before the reader joined: they were not a recipient.
                      if (sm->conversation_seq() <= p.joined_seq()) return true;
                      auto mine = parse<records::receipt_record>(b.get(cf::receipts, keys::receipt_key(id, reader)));
                      if (mine && mine->read_at_ms() != 0) return false;
                      unread.push_back({std::move(id), std::move(*sm), std::move(mine)});
                      return true;
                    });
  std::set<std::string> told;  // senders whose newest message was seen
  std::vector<bool> newest(unread.size());
  for (std::size_t i = 0; i < unread.size(); ++i) newest[i] = told.insert(unread[i].sm.message().from()).second;
  bool queued = false;
  for (std::size_t i = unread.size(); i-- > 0;) {
    auto const& u = unread[i];
    queued |= group_receipt(m, b, u.id, u.sm, reader, client::READ, at_ms, newest[i], heads, false, nullptr, &u.mine);
  }
  return queued;
}

// How many of `user`'s own messages follow `upto` in `conv` (for the unread count after a
// read mark; at most max_read_walk are looked at).
inline std::uint64_t own_after(impl const& m, std::string const& conv, std::string const& user,
                               std::string const& upto) {
  std::uint64_t own = 0;
  std::size_t visited = 0;
  m.db.scan(cf::history, keys::successor(keys::history_key(conv, upto)), keys::past_last_of(conv),
            [&](std::string_view key, std::string_view sender) {
              if (!sender.empty()) {  // the entry names its sender: no message to load
                if (sender == user) ++own;
              } else if (auto sm = m.load(std::string(keys::after_owner(key, conv)))) {
                if (sm->message().from() == user) ++own;
              }
              return ++visited < max_read_walk;
            });
  return own;
}

}  // namespace petchat::messages::service_detail
