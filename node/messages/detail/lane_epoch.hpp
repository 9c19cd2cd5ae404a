// Lane epochs from other regions (docs/FEDERATION.md, "Ordering and dedup"): which are
// refused for their date.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "base/format/format.hpp"
#include "node/log/log.hpp"

namespace petchat::messages::service_detail {

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

}  // namespace petchat::messages::service_detail
