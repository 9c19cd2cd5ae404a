// The message service's side of federation lanes that federated.cpp leaves to others:
// which lane epochs from other regions are refused for their date, and the outbox to a
// region given up (docs/FEDERATION.md, "Ordering and dedup"; lanes.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "base/format/format.hpp"
#include "federation/federation.hpp"
#include "node/log/log.hpp"
#include "node/messages/detail/keys.hpp"
#include "store/rocks/rocks.hpp"

namespace petchat::messages::service_detail {

using format::now_ms;

// A lane epoch is made from the origin's clock (ms << 16): one a day ahead would outrank its
// next ones, so it is refused, and named in the log at most once a minute (clocks to check).
inline bool lane_epoch_refused(std::string const& origin, std::uint64_t epoch) {
  static std::atomic<std::int64_t> logged_ms{0};
  std::int64_t now = now_ms(), last = logged_ms.load();
  if (epoch == 0 || epoch <= (static_cast<std::uint64_t>(now + 24LL * 3600 * 1000) << 16 | 0xffff)) return epoch == 0;
  if (now - last >= 60'000 && logged_ms.compare_exchange_strong(last, now))
    log::get("federation")
        ->error(
            "refused envelopes from {}: their lane epoch is dated {} s ahead of this node's clock (over a day); "
            "check both regions' clocks",
            origin, (static_cast<std::int64_t>(epoch >> 16) - now) / 1000);
  return true;
}

// Runs one write on the commit pipeline and waits for it (link threads only).
store::write_outcome write_blocking(store::rocks_db& db, store::rocks_db::write_fn fn);

// Every destination a lane was ever started to (`fo/<destination>` in the state family).
std::vector<std::string> outbox_destinations(store::rocks_db& db);

// How many entries to `destination` there are after seq `after`, and the first's creation time.
federation::local_store::backlog outbox_backlog(store::rocks_db& db, std::string const& destination,
                                                std::uint64_t after);

// Erases every outbox entry to `destination` and its lane's seqs (`fo/`, `fc/`), in writes
// of at most `at_once` entries, blocking. What is queued for it meanwhile goes in the last
// write, so once done nothing is held for it, and nothing more is queued while the
// directory does not list it (to_outbox). Each write first checks that `regions` does not
// list it (listed again: stops, `listed`). The caller has seen the lane (`fo/`) there and
// given it a new epoch first (local_store::outbox_drop; no lane: `no_lane`, nothing done).
federation::local_store::dropped drop_outbox(store::rocks_db& db, federation::directory const* regions,
                                             std::string const& destination, std::size_t at_once = 4096);

// An origin's inbound lane as this store holds it: its epoch and the last seq applied.
inline federation::local_store::lane read_lane(store::rocks_batch& b, std::string const& origin) {
  auto v = b.get(store::cf::state, detail::inbound_lane_key(origin));
  if (!v || v->size() != 16) return {};
  return {detail::from_be64(std::string_view(*v).substr(0, 8)), detail::from_be64(std::string_view(*v).substr(8))};
}

}  // namespace petchat::messages::service_detail
