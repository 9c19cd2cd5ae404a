#include "federation/detail/outbound.hpp"

#include <algorithm>

namespace petchat::federation::detail {

outbound_lanes::outbound_lanes(options const& opt, directory const& dir, local_store& store,
                               std::shared_ptr<spdlog::logger> log)
    : opt_(opt), dir_(dir), store_(store), log_(std::move(log)) {}

outbound_lanes::lane& outbound_lanes::lane_to(std::string const& destination) {
  auto& l = lanes_[destination];
  if (!l.started) {
    l.started = true;
    l.published = l.confirmed = store_.outbox_start(destination);
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

void outbound_lanes::note_ack(std::string const& destination, lane_ack const& ack) {
  std::lock_guard lock(acks_mutex_);
  auto& a = acks_[destination];
  if (std::pair(ack.epoch(), ack.seq()) > std::pair(a.epoch(), a.seq())) a = ack;
}

void outbound_lanes::take_confirmations() {
  if (epoch_ == 0) epoch_ = store_.outbound_epoch();
  std::map<std::string, lane_ack> got;
  {
    std::lock_guard lock(acks_mutex_);
    got.swap(acks_);
  }
  for (auto const& [dest, ack] : got) {
    if (!dir_.is_remote(dest)) continue;
    auto& l = lane_to(dest);
    // The destination is ahead of this store: a newer epoch than ours (our clock went
    // back), or more of our lane than we ever wrote (a restored store). Start a new epoch
    // above it; the destination then starts the lane at our base.
    if (ack.epoch() > epoch_ || (ack.epoch() == epoch_ && ack.seq() > store_.outbox_end(dest))) {
      epoch_ = store_.new_outbound_epoch(ack.epoch());
      log_->error(
          "federation: region {} has applied more of our lane than this store knows (epoch {} seq {}); "
          "continuing under a new lane epoch {}",
          dest, ack.epoch(), ack.seq(), epoch_);
      for (auto& [d, other] : lanes_) other.published = other.confirmed;  // send again under the new epoch
      continue;
    }
    if (ack.epoch() != epoch_ || ack.seq() <= l.confirmed) continue;  // an older epoch of ours, or no news
    l.confirmed = ack.seq();
    l.published = std::max(l.published, l.confirmed);
    l.waiting_since = clock::now();
    l.resend_delay = std::chrono::seconds(opt_.resend_after_s);
    l.hold_after = 0;
    store_.outbox_trim(dest, l.confirmed);
    show_confirmed(dest, l.confirmed);
  }
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
  b.epoch = epoch_;
  b.base = l.confirmed;
  return b;
}

void outbound_lanes::published(std::string const& destination, std::uint64_t lane_seq) {
  auto& l = lane_to(destination);
  l.published = std::max(l.published, lane_seq);
}

}  // namespace petchat::federation::detail
