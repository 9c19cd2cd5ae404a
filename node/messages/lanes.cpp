// The outbox to a region given up (`petchatctl federation drop-outbox`), and the blocking
// write the link's threads use (detail/lanes.hpp).
#include <future>
#include <memory>

#include "node/messages/detail/keys.hpp"
#include "node/messages/detail/lanes.hpp"

namespace petchat::messages::service_detail {

using store::cf;
namespace keys = detail;

store::write_outcome write_blocking(store::rocks_db& db, store::rocks_db::write_fn fn) {
  auto done = std::make_shared<std::promise<store::write_outcome>>();
  auto result = done->get_future();
  db.submit(std::move(fn), [done](store::write_outcome o) { done->set_value(o); });
  return result.get();
}

std::vector<std::string> outbox_destinations(store::rocks_db& db) {
  std::vector<std::string> out;
  auto first = keys::outbound_lane_key(""), past_last = std::string("fo0");  // '0' follows '/'
  db.scan(cf::state, first, past_last, [&](std::string_view key, std::string_view) {
    out.emplace_back(key.substr(first.size()));
    return true;
  });
  return out;
}

// Two seeks, however long the outbox (a scrape asks while a region is away for days): a
// lane's entries after what its destination confirmed have no gaps, so the first and the
// last say how many there are.
federation::local_store::backlog outbox_backlog(store::rocks_db& db, std::string const& destination,
                                                std::uint64_t after) {
  federation::local_store::backlog b;
  auto from = keys::outbox_key(destination, after + 1);
  auto past = keys::past_last_of(destination);
  auto seq_of = [&](std::string_view key) { return keys::from_be64(keys::after_owner(key, destination)); };
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  db.scan(cf::outbox, from, past, [&](std::string_view key, std::string_view value) {
    federation::body body;
    if (body.ParseFromArray(value.data(), static_cast<int>(value.size())))
      b.oldest_created_at_ms = body.created_at_ms();
    first = seq_of(key);
    return false;
  });
  if (first == 0) return b;
  db.scan_reverse(cf::outbox, from, past, [&](std::string_view key, std::string_view) {
    last = seq_of(key);
    return false;
  });
  b.entries = last >= first ? last - first + 1 : 1;
  return b;
}

federation::local_store::dropped drop_outbox(store::rocks_db& db, federation::directory const* regions,
                                             std::string const& destination, std::size_t at_once) {
  using outcome = federation::local_store::dropped::outcome;
  auto lane_end = [&db, &destination] {
    auto lane = db.get(cf::state, keys::outbound_lane_key(destination));
    return lane ? keys::from_be64(*lane) : std::uint64_t{0};
  };
  federation::local_store::dropped out;
  std::uint64_t after = 0;  // every entry up to it is erased
  for (;;) {
    // Entries queued before `seen` was read are committed: the scan sees them all, so one
    // that finds fewer than at_once leaves only what was queued after it, above `seen`.
    std::uint64_t seen = lane_end();
    std::vector<std::uint64_t> seqs;
    db.scan(cf::outbox, keys::outbox_key(destination, after + 1), keys::past_last_of(destination),
            [&](std::string_view key, std::string_view) {
              seqs.push_back(keys::from_be64(keys::after_owner(key, destination)));
              return seqs.size() < at_once;
            });
    auto state = std::make_shared<outcome>(outcome::failed);  // done: finished; listed; else one more round
    auto count = std::make_shared<std::uint64_t>(0);
    store::rocks_db::write_fn fn = [destination, regions, seqs, seen, after, state, count,
                                    at_once](store::rocks_batch& b) {
      if (regions && regions->is_remote(destination)) {
        // Listed again: what is queued now stays. The lane, under its new epoch, starts
        // after what is erased (confirmed, as far as it goes), not in a gap.
        *state = outcome::listed;
        auto confirmed = b.get(cf::state, keys::outbound_confirmed_key(destination));
        if (after > (confirmed ? keys::from_be64(*confirmed) : 0))
          b.put(cf::state, keys::outbound_confirmed_key(destination), keys::be64(after));
        return true;
      }
      for (auto seq : seqs) b.erase(cf::outbox, keys::outbox_key(destination, seq));
      *count = seqs.size();
      if (seqs.size() == at_once) return true;
      // The last write: what was queued since `seen` goes with the lane's seqs.
      auto lane = b.get(cf::state, keys::outbound_lane_key(destination));
      std::uint64_t end = lane ? keys::from_be64(*lane) : 0;
      std::uint64_t from = std::max(seqs.empty() ? 0 : seqs.back(), seen);
      if (end > from + at_once) return true;  // a flood meanwhile: another round
      for (std::uint64_t seq = from + 1; seq <= end; ++seq)
        if (b.get(cf::outbox, keys::outbox_key(destination, seq))) {
          b.erase(cf::outbox, keys::outbox_key(destination, seq));
          ++*count;
        }
      b.erase(cf::state, keys::outbound_lane_key(destination));
      b.erase(cf::state, keys::outbound_confirmed_key(destination));
      *state = outcome::done;
      return true;
    };
    if (write_blocking(db, std::move(fn)) != store::write_outcome::committed)
      return {outcome::failed, out.entries, "the store did not take the write"};
    if (*state == outcome::listed) return {outcome::listed, out.entries, {}};
    out.entries += *count;
    if (*state == outcome::done) return out;
    after = std::max(seqs.empty() ? 0 : seqs.back(), seqs.size() == at_once ? 0 : seen);
  }
}

}  // namespace petchat::messages::service_detail
