// Delivery acknowledgements: a device's position, the user's delivered mark, and the
// DELIVERED receipts they make. Acknowledgements are gathered: every one that arrives while
// a write of acknowledgements is queued joins it, so the members of a group acknowledging
// a message cost the writer one request (one savepoint, one completion hop), not one each.
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "node/messages/detail/receipts.hpp"
#include "node/messages/messages.hpp"

namespace petchat::messages {

namespace asio = boost::asio;

namespace {

// The seq of the first committed mailbox entry of `user` after `after`, if any.
std::optional<std::uint64_t> first_entry_after(impl const& m, std::string const& user, std::uint64_t after) {
  std::optional<std::uint64_t> found;
  m.db.scan(cf::mailbox, keys::mailbox_key(user, after + 1), keys::past_last_of(user),
            [&](std::string_view key, std::string_view) {
              found = keys::from_be64(keys::after_owner(key, user));
              return false;
            });
  return found;
}

// One acknowledgement inside the gathered write; true if it changed anything. Receipts are
// made from a per-user mark (every event up to it has been looked at), not from the
// device's position: a new device acknowledging a long mailbox costs nothing, and a long
// stretch is walked in slices of max_ack_walk, one per write, so that no write is held
// long by one acknowledgement.
bool apply_ack(impl& m, store::rocks_batch& b, impl::pending_ack& a, std::vector<news>& heads, bool& queued,
               ack_memo& memo) {
  a.beyond = false;
  a.more = false;
  bool moved = false;
  if (a.first && a.seq > m.head(b, a.user)) {
    a.beyond = true;
    return false;
  }
  delivered_mark mark(b, a.user);
  if (a.first && mark.device_position(a.device) < a.seq) {
    mark.set_device_position(a.device, a.seq);
    moved = true;
  }
  if (mark.seq() >= a.seq) {
    if (moved) mark.write();
    return moved;
  }
  std::uint64_t after = mark.seq();
  std::uint64_t upto = std::min(a.seq, after + max_ack_walk);
  std::uint64_t empty = 0;  // seqs passed where no entry starts
  if (upto < a.seq) {
    // A stretch where no entry starts (a restored store's heads jumped far ahead of the
    // marks: node/messages/salvage.cpp) is passed in this slice, not a slice per 1,024
    // seqs: its seqs hold nothing but the tails of runs that start before it, which the
    // walk's scan reads all the same, and the slice still reads at most 1,024 seqs' worth
    // of entries past it. Committed entries are looked at: one this batch writes comes
    // after every committed one, so after the first found, or after the committed head.
    auto next = first_entry_after(m, a.user, after);
    auto stop = std::min(a.seq, next ? *next - 1 + max_ack_walk : m.stored_head(a.user));
    if (stop > upto && (!next || *next > upto + 1)) {
      empty = stop - upto;
      upto = stop;
    }
  }
  a.more = upto < a.seq;
  mark.set_seq(upto);
  deliver_range(m, b, a.user, after, upto, heads, queued, memo, mark);
  m.scanned_by_acks += upto - after - empty;  // (nothing was in the stretch passed)
  mark.write();
  return true;
}

// What one gathered write took and made.
struct ack_write {
  bool taken = false;
  std::vector<impl::pending_ack> acks;
  std::vector<news> heads;
  bool queued = false;
};

}  // namespace

void message_service::impl::gather_ack(pending_ack a) {
  {
    std::lock_guard lock(acks_mutex);
    acks_waiting.push_back(std::move(a));
    if (acks_queued) return;  // the queued write takes it
    acks_queued = true;
  }
  write_acks();
}

void message_service::impl::write_acks(std::optional<pending_ack> alone) {
  auto st = std::make_shared<ack_write>();
  if (alone) {
    st->acks.push_back(std::move(*alone));
    st->taken = true;
  }
  // Takes what is waiting (once: from here on, new acknowledgements queue another write).
  auto take = [this, st] {
    if (st->taken) return;
    std::lock_guard lock(acks_mutex);
    st->acks.swap(acks_waiting);
    acks_waiting.swap(acks_spare);
    acks_queued = false;
    st->taken = true;
  };
  store::rocks_db::write_fn mutation = [this, st, take](store::rocks_batch& b) {
    take();
    bool changed = false;
    ack_memo memo;
    for (auto& a : st->acks) changed |= apply_ack(*this, b, a, st->heads, st->queued, memo);
    memo.write_counts(b);
    return changed;
  };
  // On the writer thread: the rest happens on an I/O thread, the first acknowledger's.
  store::rocks_db::done_fn finished = [this, st, take](store::write_outcome outcome) {
    take();  // a write the store refused before running it took nothing yet
    if (st->acks.empty()) return;
    auto ex = st->acks.front().ex;
    asio::post(ex, [this, st, outcome] {
      bool failed = outcome == store::write_outcome::failed;
      // One acknowledgement that threw (a record of its user the store could not read)
      // failed the whole gathered write: each is written again alone, so that only its own
      // fails. Not while the store refuses writes (a full disk), which fails them alike.
      if (failed && st->acks.size() > 1 && db.write_error().empty()) {
        for (auto& a : st->acks) write_acks(std::move(a));
        return;
      }
      if (!failed) after_commit(st->heads, st->queued);
      for (auto& a : st->acks) {
        errors::status s = errors::ok();
        if (failed)
          s = write_failed("the acknowledgement could not be stored");
        else if (a.beyond)
          s = fail(code::invalid_field, "ack.seq is beyond the newest event of the mailbox", "seq");
        else if (a.more) {
          a.first = false;
          gather_ack(std::move(a));
          continue;
        }
        asio::post(a.ex, [done = std::move(a.done), s]() { done(s); });
      }
      st->acks.clear();
      std::lock_guard lock(acks_mutex);
      if (st->acks.capacity() > acks_spare.capacity()) acks_spare.swap(st->acks);
    });
  };
  db.submit(std::move(mutation), std::move(finished));
}

void message_service::ack(std::string user, std::string device, std::uint64_t seq, asio::any_io_executor ex,
                          ack_done done) {
  impl::pending_ack a;
  a.user = std::move(user);
  a.device = std::move(device);
  a.seq = seq;
  a.ex = std::move(ex);
  a.done = std::move(done);
  impl_->gather_ack(std::move(a));
}

awaitable<errors::status> message_service::ack(std::string user, std::string device, std::uint64_t seq) {
  auto initiate = [this](auto handler, std::string user, std::string device, std::uint64_t seq) {
    auto ex = asio::get_associated_executor(handler);
    // ack_done must be copyable; the awaitable handler is move-only, hence the shared_ptr.
    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
    ack(std::move(user), std::move(device), seq, ex, [shared](errors::status s) { std::move (*shared)(std::move(s)); });
  };
  return asio::async_initiate<asio::use_awaitable_t<> const, void(errors::status)>(
      initiate, asio::use_awaitable, std::move(user), std::move(device), seq);
}

}  // namespace petchat::messages
