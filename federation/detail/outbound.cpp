#include "federation/detail/outbound.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

#include "base/format/format.hpp"

namespace petchat::federation::detail {

outbound_lanes::outbound_lanes(options const& opt, directory const& dir, local_store& store,
                               std::shared_ptr<spdlog::logger> log)
    : opt_(opt), dir_(dir), store_(store), log_(std::move(log)) {}

outbound_lanes::lane& outbound_lanes::lane_to(std::string const& destination) {
  auto& l = lanes_[destination];
  if (!l.started) {
    l.started = true;
    l.epoch = store_.outbound_epoch(destination);
    l.published = l.confirmed = store_.outbox_start(destination);
    l.floor = std::min(store_.outbox_floor(destination), l.confirmed);
    l.waiting_since = clock::now();
    l.resend_delay = std::chrono::seconds(opt_.resend_after_s);
    show_confirmed(destination, l.confirmed);
  }
  return l;
}

void outbound_lanes::show_confirmed(std::string const& destination, std::uint64_t seq) {
  std::lock_guard lock(view_mutex_);
  confirmed_view_[destination] = seq;
}

std::map<std::string, std::uint64_t> outbound_lanes::confirmed() const {
  std::lock_guard lock(view_mutex_);
  return confirmed_view_;
}

void outbound_lanes::forget_lane(std::string const& destination) {
  lanes_.erase(destination);
  std::lock_guard lock(view_mutex_);
  confirmed_view_.erase(destination);
}

void outbound_lanes::note_ack(std::string const& destination, lane_ack const& ack, std::int64_t created_ms) {
  std::lock_guard lock(acks_mutex_);
  auto [it, fresh] = acks_.try_emplace(destination, noted_ack{ack, created_ms});
  auto& a = it->second;
  // The newest the destination made counts (a restored destination's honest one beats an
  // old one replayed with a larger seq); of the same moment, the furthest.
  if (!fresh && std::tuple(created_ms, ack.epoch(), ack.seq()) > std::tuple(a.created_ms, a.ack.epoch(), a.ack.seq()))
    a = {ack, created_ms};
}

void outbound_lanes::take_confirmations() {
  std::map<std::string, noted_ack> got;
  {
    std::lock_guard lock(acks_mutex_);
    got.swap(acks_);
  }
  // Epochs are made from this region's clock (ms << 16, then 16 random bits): one from
  // more than a day ahead of it was never ours, whatever our store went through. Taking it
  // would move every lane to an epoch above it (at UINT64_MAX: wrap to 0, an epoch every
  // destination refuses).
  auto latest_epoch = (static_cast<std::uint64_t>(format::now_ms() + 24LL * 3600 * 1000) << 16) | 0xffff;
  auto now = clock::now();
  for (auto const& [dest, noted] : got) {
    auto const& ack = noted.ack;
    if (!dir_.is_remote(dest)) continue;
    if (ack.epoch() > latest_epoch) {
      log_->error("federation: region {} confirmed our lane under epoch {}, which this region never made; ignored",
                  dest, ack.epoch());
      continue;
    }
    auto& l = lane_to(dest);
    // A confirmation that turns the lane (back, or to a new epoch) costs a write and a
    // resend: it must be newer than the one taken last (an old one captured off the bus
    // and replayed is not), and it is taken at most once a minute per destination.
    bool ahead = ack.epoch() > l.epoch || (ack.epoch() == l.epoch && ack.seq() > store_.outbox_end(dest));
    bool back = ack.epoch() == l.epoch && ack.seq() < l.confirmed && ack.seq() >= l.floor;
    // A time well ahead of this clock would make every later confirmation look older.
    auto made = std::min(noted.created_ms, format::now_ms() + max_ack_skew_ms);
    bool older = made < l.ack_made_ms;
    // After a going back, the entries it lost are sent again: an older confirmation of
    // them (one from before, replayed) would count them as applied there.
    bool resent = ack.epoch() == l.epoch && ack.seq() <= l.resent_through;
    if (((ahead || back) && (older || (l.turned_at && now - *l.turned_at < std::chrono::minutes(1)))) ||
        (resent && older)) {
      log_->debug(
          "federation: region {} confirmed our lane at epoch {} seq {} (confirmed {}), in a confirmation older "
          "than one taken or too soon after the last turn: ignored",
          dest, ack.epoch(), ack.seq(), l.confirmed);
      continue;
    }
    l.ack_made_ms = std::max(l.ack_made_ms, made);
    if (ahead || back) l.turned_at = now;
    if (back) l.resent_through = std::max(l.resent_through, l.confirmed);
    // The destination is ahead of this store: a newer epoch than ours (our clock went
    // back), or more of our lane than we ever wrote (a restored store). Start a new epoch
    // of its lane above it; the destination then starts the lane at our base.
    if (ahead) {
      l.epoch = store_.new_outbound_epoch(dest, ack.epoch());
      log_->error(
          "federation: region {} has applied more of our lane than this store knows (epoch {} seq {}); "
          "continuing under a new lane epoch {}",
          dest, ack.epoch(), ack.seq(), l.epoch);
      l.published = l.confirmed;  // send again under the new epoch
      continue;
    }
    if (ack.epoch() != l.epoch || ack.seq() == l.confirmed) continue;  // an older epoch of ours, or no news
    if (ack.seq() < l.confirmed)
      went_back(dest, l, ack.seq());
    else
      confirm(dest, l, ack.seq());
  }
  for (auto& [dest, l] : lanes_) forget_old(dest, l);
}

void outbound_lanes::confirm(std::string const& destination, lane& l, std::uint64_t seq) {
  l.confirmed = seq;
  l.published = std::max(l.published, l.confirmed);
  l.waiting_since = clock::now();
  l.resend_delay = std::chrono::seconds(opt_.resend_after_s);
  l.hold_after = 0;
  store_.outbox_confirmed(destination, seq);
  show_confirmed(destination, seq);
}

// The destination's lane state went back (its store was restored from a backup, or
// rebuilt): what it applied after `seq` is gone there. Send it again while it is held;
// what is no longer held is lost there, and the destination skips to our floor.
void outbound_lanes::went_back(std::string const& destination, lane& l, std::uint64_t seq) {
  if (seq < l.floor) {
    if (l.lost_reported != seq + 1)
      log_->error(
          "federation: region {} went back to lane seq {} (restored from a backup?), but entries {}..{} were "
          "confirmed longer than federation.keep_confirmed_s ago and are no longer held: they are lost there",
          destination, seq, seq + 1, l.floor);
    l.lost_reported = seq + 1;
    return;
  }
  log_->warn(
      "federation: region {} went back from lane seq {} to {} (restored from a backup?); sending it entries "
      "{}..{} again",
      destination, l.confirmed, seq, seq + 1, l.published);
  l.published = seq;
  confirm(destination, l, seq);
}

// Confirmed entries are held for keep_confirmed_s, for a destination that goes back; with
// 0, forgotten as soon as they are confirmed. The store forgets a bounded stretch per call:
// while a call forgets something, the next round calls again; once the oldest held entry
// is young enough, the lane is looked at again a minute later.
void outbound_lanes::forget_old(std::string const& destination, lane& l) {
  if (l.floor >= l.confirmed) return;
  auto now = clock::now();
  bool keep = opt_.keep_confirmed_s != 0;
  if (keep && now - l.forgot_at < std::chrono::minutes(1)) return;
  auto before =
      keep ? format::now_ms() - std::int64_t{opt_.keep_confirmed_s} * 1000 : std::numeric_limits<std::int64_t>::max();
  auto floor = std::min(store_.outbox_forget(destination, l.floor, l.confirmed, before), l.confirmed);
  l.forgot_at = floor > l.floor ? clock::time_point{} : now;
  l.floor = floor;
}

outbound_lanes::batch outbound_lanes::next(std::string const& destination, std::size_t limit) {
  auto now = clock::now();
  auto& l = lane_to(destination);
  if (l.published == l.confirmed) l.waiting_since = now;
  // Unconfirmed for too long: send again from the last confirmed seq, one batch, then wait
  // for confirmations to move. Each fruitless resend doubles the wait (up to 10 minutes),
  // so a destination that is down does not get its stream filled with copies.
  if (l.published > l.confirmed && now - l.waiting_since > l.resend_delay) {
    log_->warn("federation: region {} has not confirmed lane entries {}..{} for {} s; sending them again", destination,
               l.confirmed + 1, l.published,
               std::chrono::duration_cast<std::chrono::seconds>(now - l.waiting_since).count());
    l.published = l.confirmed;
    l.hold_after = l.confirmed + limit;
    l.waiting_since = now;
    l.resend_delay = std::min<clock::duration>(l.resend_delay * 2, std::chrono::minutes(10));
  }
  batch b;
  if (l.hold_after != 0 && l.published >= l.hold_after) return b;
  b.entries = store_.outbox_peek(destination, l.published, limit);
  b.epoch = l.epoch;
  b.base = l.confirmed;
  b.floor = l.floor;
  return b;
}

void outbound_lanes::published(std::string const& destination, std::uint64_t lane_seq) {
  auto& l = lane_to(destination);
  l.published = std::max(l.published, lane_seq);
}

}  // namespace petchat::federation::detail
