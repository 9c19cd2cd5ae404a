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

std::uint64_t drop_outbox(store::rocks_db& db, std::string const& destination) {
  constexpr std::size_t at_once = 4096;
  std::uint64_t erased = 0;
  for (;;) {
    std::vector<std::uint64_t> seqs;  // the next entries held, oldest first
    db.scan(cf::outbox, keys::outbox_key(destination, 0), keys::past_last_of(destination),
            [&](std::string_view key, std::string_view) {
              seqs.push_back(keys::from_be64(keys::after_owner(key, destination)));
              return seqs.size() < at_once;
            });
    auto done = std::make_shared<bool>(false);
    auto count = std::make_shared<std::uint64_t>(0);
    store::rocks_db::write_fn fn = [destination, seqs, done, count](store::rocks_batch& b) {
      for (auto seq : seqs) b.erase(cf::outbox, keys::outbox_key(destination, seq));
      *count = seqs.size();
      if (seqs.size() == at_once) return true;
      // The last write: what was queued since the scan goes with the lane's seqs.
      auto lane = b.get(cf::state, keys::outbound_lane_key(destination));
      std::uint64_t end = lane ? keys::from_be64(*lane) : 0, after = seqs.empty() ? 0 : seqs.back();
      if (end > after + at_once) return true;  // a flood meanwhile: another round
      for (std::uint64_t seq = after + 1; seq <= end; ++seq)
        if (b.get(cf::outbox, keys::outbox_key(destination, seq))) {
          b.erase(cf::outbox, keys::outbox_key(destination, seq));
          ++*count;
        }
      b.erase(cf::state, keys::outbound_lane_key(destination));
      b.erase(cf::state, keys::outbound_confirmed_key(destination));
      *done = true;
      return true;
    };
    if (write_blocking(db, std::move(fn)) != store::write_outcome::committed)
      throw store::rocks_error("cannot drop the outbox to " + destination);
    erased += *count;
    if (*done) return erased;
  }
}

}  // namespace petchat::messages::service_detail
