// Read marks and deletions: what a user does to messages they have. A read moves the
// reader's mark and sends READ receipts (and DELIVERED for what was never acknowledged); a
// deletion hides a message for its user, or erases it for everyone. Each costs one of the
// user's sends (messages.max_per_second): both write events and receipts to others.
#include <boost/asio/this_coro.hpp>

#include "node/async/async.hpp"
#include "node/messages/detail/group_ops.hpp"
#include "node/messages/detail/receipts.hpp"
#include "node/messages/messages.hpp"

// GCC 12 destroys a capturing lambda written inside a co_await expression twice: every
// lambda handed to an awaited call is stored in a named variable first (see users.cpp).

namespace petchat::messages {

namespace {

using impl = message_service::impl;

// Inside a read's write in a direct conversation: every message to `user` up to `upto` is
// read. One that was never acknowledged is delivered too, and its sender is told so first
// (DELIVERED, then READ): a client that reads before it acknowledges must not cost the
// sender the delivery receipt. True if a receipt went to the outbox.
bool read_direct(message_service::impl const& m, store::rocks_batch& b, std::string const& conv,
                 std::string const& user, std::optional<std::string> const& prev, std::string const& upto,
                 std::int64_t now, std::vector<news>& heads) {
  bool queued = false;
  auto marked = mark_read(m, b, conv, user, prev, upto, now);
  for (auto it = marked.rbegin(); it != marked.rend(); ++it) {
    if (it->delivered_at_ms() != 0) continue;
    it->set_delivered_at_ms(now);
    queued |= m.deliver_receipt(b, it->message().from(), m.receipt_for(*it, client::DELIVERED, user, now), heads, &*it);
    message_service::impl::update_message(b, parse_id(it->message().id()).value_or(""), *it);
  }
  // The newest stands for every earlier one.
  if (!marked.empty())
    queued |= m.deliver_receipt(b, marked.front().message().from(),
                                m.receipt_for(marked.front(), client::READ, user, now), heads);
  return queued;
}

// The reader's unread count starts again after `upto` (the conversation list).
void move_read_seq(message_service::impl const& m, store::rocks_batch& b, std::string const& conv,
                   std::string const& user, std::string const& upto, std::int64_t now) {
  auto read = parse<records::stored_message>(b.get(cf::messages, upto));
  if (!read || read->conversation_seq() == 0) return;  // stored before the list existed
  auto p = keys::is_group(conv) ? load_participant(b, user, conv) : direct_participant(b, user, conv, now);
  if (!p || read->conversation_seq() <= p->read_seq()) return;
  move_read_position(*p, read->conversation_seq(), [&] { return own_after(m, conv, user, upto); });
  put_participant(b, user, conv, *p);
}

}  // namespace

awaitable<errors::status> message_service::read(std::string user, std::string conversation_id, std::string message_id) {
  auto& m = *impl_;
  if (conversation_id.empty())
    co_return fail(code::missing_field, "read.conversation_id is required", "conversation_id");
  if (message_id.empty()) co_return fail(code::missing_field, "read.message_id is required", "message_id");
  if (!m.member(user, conversation_id))
    co_return fail(code::conversation_not_found, "no conversation '" + conversation_id + "' of yours");
  // Only a message of the reader's: not one from before they joined a group whose history
  // is hidden (the answer would tell them it exists). One they deleted for themselves may
  // be read up to, or their unread count could not get past it.
  auto raw = parse_id(message_id);
  auto stored = raw && m.db.get(cf::history, keys::history_key(conversation_id, *raw)) ? m.load(*raw) : std::nullopt;
  if (!stored || message_service::impl::expired(*stored, now_ms()) || !m.may_see(user, *stored))
    co_return fail(code::message_not_found, "no message '" + message_id + "' in that conversation");
  // A mark already there (or further) moves nothing: answered without a write.
  auto committed = m.db.get(cf::state, keys::read_key(conversation_id, user));
  if (committed && *committed >= *raw) co_return errors::ok();
  // A read that moves the mark writes events to the reader's devices and receipts to the
  // senders: it costs one of the reader's sends (messages.max_per_second).
  if (auto refused = m.limiter.charge(user)) co_return *refused;
  struct state {
    std::vector<news> heads;
    bool queued = false;
    bool gone = false;  // no longer a member, by a change of this write's batch
  };
  auto st = std::make_shared<state>();
  std::string upto = *raw;
  store::rocks_db::write_fn mutation = [&m, st, user, conversation_id, upto](store::rocks_batch& b) {
    st->heads.clear();
    st->queued = false;
    std::optional<records::participant_record> p;
    if (keys::is_group(conversation_id)) {  // (removed since the check above: their last event was that)
      p = load_participant(b, user, conversation_id);
      st->gone = !p || !p->member();
      if (st->gone) return false;
    }
    auto mark_key = keys::read_key(conversation_id, user);
    auto prev = b.get(cf::state, mark_key);
    if (prev && *prev >= upto) return false;  // read marks only move forward
    b.put(cf::state, mark_key, upto);
    std::int64_t now = now_ms();
    if (p) {
      st->queued |= mark_read_group(m, b, conversation_id, user, *p, prev, upto, now, st->heads);
    } else {
      st->queued |= read_direct(m, b, conversation_id, user, prev, upto, now, st->heads);
    }
    move_read_seq(m, b, conversation_id, user, upto, now);
    records::stored_event mark;
    mark.mutable_read_mark()->set_conversation_id(conversation_id);
    mark.mutable_read_mark()->set_message_id(print_id(upto));
    mark.mutable_read_mark()->set_at_ms(now);
    st->heads.push_back({user, m.append(b, user, mark), mark});
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome != store::write_outcome::committed) m.limiter.refund(user);  // it moved nothing
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the read mark could not be stored");
  if (st->gone) co_return fail(code::conversation_not_found, "no conversation '" + conversation_id + "' of yours");
  m.after_commit(st->heads, st->queued);
  co_return errors::ok();
}

awaitable<errors::status> message_service::remove(std::string user, std::string message_id, bool for_everyone) {
  auto& m = *impl_;
  auto raw = parse_id(message_id);
  auto stored = raw ? m.load(*raw) : std::nullopt;
  // Its sender may take a message back for everyone after hiding it for themselves (from
  // another of their devices, say): their own hiding does not make it unknown to them then.
  bool taken_back = stored && for_everyone && stored->message().from() == user;
  bool seen =
      stored && (taken_back ? !impl::expired(*stored, now_ms()) : m.visible(*stored, user, now_ms()).has_value());
  if (!seen || !m.may_see(user, *stored)) co_return fail(code::message_not_found, "no message '" + message_id + "'");
  if (for_everyone) {
    if (stored->message().from() != user) co_return fail(code::not_sender, "only the sender can delete for everyone");
    if (now_ms() - stored->message().sent_at_ms() > std::int64_t(m.options.delete_for_everyone_window_s) * 1000)
      co_return fail(code::delete_window_passed, "the time to delete this message for everyone has passed");
  }
  if (auto refused = m.limiter.charge(user)) co_return *refused;
  struct state {
    std::vector<news> heads;
    bool queued = false;
    bool former = false;
  };
  auto st = std::make_shared<state>();
  std::string id = *raw;
  store::rocks_db::write_fn mutation = [&m, st, user, id, for_everyone](store::rocks_batch& b) {
    st->heads.clear();
    st->queued = false;
    st->former = false;
    auto sm = parse<records::stored_message>(b.get(cf::messages, id));
    if (!sm) return false;
    if (for_everyone && keys::is_group(sm->message().conversation_id())) {
      // Those who left or were removed no longer act in the group: their part is read-only.
      auto p = load_participant(b, user, sm->message().conversation_id());
      st->former = !p || !p->member();
      if (st->former) return false;
    }
    if (!for_everyone) {
      // Hidden by a request at the same moment: as for one after it, there is no such message.
      auto const& hidden = sm->hidden_for();
      if (std::find(hidden.begin(), hidden.end(), user) != hidden.end()) return false;
      sm->add_hidden_for(user);
      impl::update_message(b, id, *sm);
      return true;
    }
    auto const& msg = sm->message();
    std::set<std::string> floored;
    m.erase_message(b, id, *sm, false, floored);
    auto e = deletion_of(msg, user, now_ms());
    if (keys::is_group(msg.conversation_id())) {
      auto conv = parse<records::conversation_record>(b.get(cf::conversations, msg.conversation_id()));
      if (conv) st->queued = tell_group(m, b, *conv, msg.conversation_id(), sm->conversation_seq(), e, st->heads);
      return true;
    }
    federation::body envelope;
    *envelope.mutable_deleted() = e.deleted();
    m.deliver_to_both(b, msg.from(), msg.to(), e, std::move(envelope), nullptr, st->heads, st->queued);
    return true;
  };
  auto outcome = co_await async::write(m.db, std::move(mutation));
  if (outcome != store::write_outcome::committed) m.limiter.refund(user);  // it changed nothing
  if (outcome == store::write_outcome::failed) co_return m.write_failed("the deletion could not be stored");
  if (outcome == store::write_outcome::rolled_back && st->former)
    co_return fail(code::not_a_member, "you are no longer a member of this conversation");
  if (outcome == store::write_outcome::rolled_back) co_return fail(code::message_not_found, "no such message");
  m.after_commit(st->heads, st->queued);
  co_return errors::ok();
}

}  // namespace petchat::messages
