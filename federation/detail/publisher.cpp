#include "federation/detail/publisher.hpp"

#include <pthread.h>

#include "base/format/format.hpp"

namespace petchat::federation::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t publish_batch = 1024;       // outbox entries per round and destination
constexpr std::size_t bundle_bytes = 512 * 1024;  // and bytes (NATS's default max payload is 1 MiB)
constexpr std::size_t max_live_queued = 4096;     // live envelopes waiting for the live thread
constexpr std::size_t max_live_bytes = 16 << 20;  // and their bytes
constexpr std::size_t seal_headroom = 16 * 1024;  // what sealing adds to a bundle's bodies, at most
constexpr auto max_backoff = 30s;
constexpr auto careful_round = 500ms;  // a round publishing a bundle at a time stops after
constexpr int presence_chunk = 500;    // users per presence envelope, far below NATS's payload limit

}  // namespace

publisher::publisher(link_state& state, nats_connection& conn, outbound_lanes& lanes, link::presence_source presence)
    : s_(state), conn_(conn), lanes_(lanes), presence_(std::move(presence)) {}

bool publisher::publish_round() {
  lanes_.take_confirmations();
  bool progressed = false;
  auto regions = s_.dir.all();
  for (auto const& r : *regions) {
    auto const& dest = r.name;
    if (dest == s_.dir.self()) continue;
    if (s_.stopping || !s_.connected) break;
    auto& [until, delay] = backoff_[dest];
    if (clock::now() < until) continue;
    auto next = lanes_.next(dest, publish_batch);
    if (next.entries.empty()) continue;
    auto started = clock::now();
    bool& careful = careful_[dest];
    auto [stored, refused] = publish_to(dest, next, careful);
    if (stored > 0) {
      lanes_.published(dest, next.entries[stored - 1].lane_seq);
      s_.published += stored;
      progressed = true;
    }
    auto took = clock::now() - started;
    if (refused) {
      // The next rounds to this region publish a bundle at a time, each marked published
      // as it is stored: a destination that takes only part of a round (its stream, or this
      // origin's share of it, full) then sees the rest go on from where it stopped.
      careful = true;
      delay = stored > 0 || delay == clock::duration::zero() ? clock::duration(250ms)
                                                             : std::min<clock::duration>(max_backoff, delay * 2);
      until = clock::now() + std::max(delay, took);
      if (!s_.connected) continue;  // the disconnect already said what is wrong: NATS, not this region
      s_.set_error("region " + dest + " did not take " + std::to_string(next.entries.size() - stored) +
                   " envelopes (its stream unreachable, or this region's share of it full?); retrying in " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()) + " ms");
      continue;
    }
    // Nothing refused: back to whole rounds (a careful round cut short by its time, its rest
    // included: all-or-nothing rounds that are refused again come back here).
    bool cut_short = careful && stored < next.entries.size();
    careful = false;
    delay = clock::duration::zero();
    // One thread publishes to every region, waiting for each one's JetStream to take its
    // bundles: a region whose stream answers just in time must not take that thread for
    // itself. One that kept it more than half a second waits as long before its next turn
    // (not a round cut short on purpose: its time was bounded already).
    if (took > 500ms && !cut_short) until = clock::now() + took;
  }
  return progressed;
}

// Publishes `next` as bundles; returns how many of its entries JetStream stored, counted from
// the first (all or none unless `one_by_one`: then a bundle at a time, each waited for, for
// half a second at most), and whether one was refused (or could not be sent).
publisher::outcome publisher::publish_to(std::string const& destination, outbound_lanes::batch& next, bool one_by_one) {
  auto& entries = next.entries;
  auto subject = s_.names.fed_to(destination);
  conn_.reset_publish_failures();
  // A bundle never passes the server's max_payload: one that did would be refused every
  // time, and every envelope after it to that region would wait behind it.
  auto max_payload = static_cast<std::size_t>(std::max<int64_t>(0, natsConnection_GetMaxPayload(conn_.nc())));
  auto limit = std::min(bundle_bytes, max_payload > 2 * seal_headroom ? max_payload - seal_headroom : max_payload / 2);
  bool failed = false;
  std::size_t i = 0, stored = 0;
  auto started = clock::now();
  while (i < entries.size() && !failed) {
    // A bundle at a time is a round trip each: such a round stops after half a second (the
    // rest goes next turn), so that this thread goes on to the other regions and its work.
    if (one_by_one && stored > 0 && clock::now() - started > careful_round) break;
    std::vector<std::string> bodies;
    std::size_t bytes = 0;
    while (i < entries.size() && bodies.size() < max_bundle_bodies &&
           (bodies.empty() || bytes + entries[i].body.size() <= limit)) {
      bytes += entries[i].body.size();
      bodies.push_back(std::move(entries[i].body));
      ++i;
    }
    auto sealed = seal(std::move(bodies), s_.dir.self(), s_.key, next.epoch, next.base, next.floor);
    if (max_payload > 0 && sealed.size() > max_payload) {
      // One envelope alone is too large for the bus: nothing here can send it. Said plainly
      // (it holds up this region's lane until the servers take larger messages).
      s_.log->error(
          "federation: an envelope to region {} is {} bytes, above the NATS servers' max_payload of {}: raise "
          "max_payload on the NATS servers (docs/FEDERATION.md: a body that large comes of messages.max_text_bytes "
          "and max_content_bytes, or of a large group), or this region's lane stays held up here",
          destination, sealed.size(), max_payload);
      failed = true;
      break;
    }
    natsMsg* m = nullptr;
    natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, sealed.data(), static_cast<int>(sealed.size()));
    if (s == NATS_OK && one_by_one) {
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = s_.opt.publish_timeout_ms;
      jsPubAck* ack = nullptr;
      s = js_PublishMsg(&ack, conn_.js(), m, &po, nullptr);
      if (ack) jsPubAck_Destroy(ack);
      if (s == NATS_OK) stored = i;
    } else if (s == NATS_OK) {
      s = js_PublishMsgAsync(conn_.js(), &m, nullptr);
    }
    natsMsg_Destroy(m);
    failed = s != NATS_OK;
  }
  if (one_by_one) return {stored, failed};
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = s_.opt.publish_timeout_ms;
  if (js_PublishAsyncComplete(conn_.js(), &po) != NATS_OK) {
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, conn_.js()) == NATS_OK) natsMsgList_Destroy(&pending);
    failed = true;
  }
  if (failed || conn_.publish_failures() != 0) return {0, true};
  return {entries.size(), false};
}

void publisher::send_confirmations() {
  for (auto const& [origin, lane] : s_.store.inbound_lanes()) {
    if (!s_.dir.is_remote(origin)) continue;
    body b;
    b.mutable_lane_ack()->set_epoch(lane.epoch);
    b.mutable_lane_ack()->set_seq(lane.seq);
    send_ephemeral(origin, std::move(b));
  }
}

// `full` (users missing from it are offline) only when one chunk holds everyone; users in
// other chunks' reports expire on their own.
void publisher::refresh_presence() {
  if (!presence_) return;
  auto regions = s_.dir.all();
  for (auto const& r : *regions) {
    if (r.name == s_.dir.self()) continue;
    federation::presence_update all;
    try {
      all = presence_(r.name);
    } catch (std::exception const& e) {
      s_.log->error("federation: the presence snapshot for {} failed: {}", r.name, e.what());
      continue;
    }
    for (int i = 0; i < all.entries_size() || i == 0; i += presence_chunk) {
      body b;
      auto* p = b.mutable_presence();
      for (int j = i; j < std::min(all.entries_size(), i + presence_chunk); ++j) *p->add_entries() = all.entries(j);
      p->set_full(all.entries_size() <= presence_chunk);
      p->set_read_at_ms(all.read_at_ms());
      send_ephemeral(r.name, std::move(b));
    }
  }
}

void publisher::send_ephemeral(std::string const& destination, body b) {
  // Never to a region the directory does not list (taken out, or made up): presence and
  // typing are for federated regions only.
  if (!s_.connected || !s_.dir.is_remote(destination)) return;
  // How long a receiver may believe an ONLINE entry is the sender's to say: a region that
  // refreshes every minute is not flapping offline where the default is 10 s.
  if (b.has_presence()) b.mutable_presence()->set_interval_s(s_.opt.presence_interval_s);
  b.set_origin(s_.dir.self());
  b.set_destination(destination);
  b.set_created_at_ms(format::now_ms());
  auto sealed = seal({b.SerializeAsString()}, s_.dir.self(), s_.key);
  std::lock_guard lock(live_mutex_);
  if (live_stopping_) return;
  // While NATS does not take them, at most 4,096 wait and 16 MiB (presence snapshots of a
  // large region are tens of KiB each): the oldest go first, they are worth least.
  while (!live_queue_.empty() &&
         (live_queue_.size() >= max_live_queued || live_bytes_ + sealed.size() > max_live_bytes)) {
    live_bytes_ -= live_queue_.front().second.size();
    live_queue_.pop_front();
  }
  live_bytes_ += sealed.size();
  live_queue_.emplace_back(s_.names.live_to(destination), std::move(sealed));
  live_cv_.notify_one();
}

void publisher::start_live() {
  live_thread_ = std::thread([this] {
    run_live();
    live_ended_.set_value();
  });
}

bool publisher::stop_live(std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard lock(live_mutex_);
    live_stopping_ = true;
  }
  live_cv_.notify_one();
  if (!live_thread_.joinable()) return true;
  if (live_ended_.get_future().wait_until(deadline) != std::future_status::ready) {
    live_thread_.detach();
    return false;
  }
  live_thread_.join();
  return true;
}

void publisher::run_live() {
  pthread_setname_np(pthread_self(), "fed-live");
  std::deque<std::pair<std::string, std::string>> batch;
  for (;;) {
    {
      std::unique_lock lock(live_mutex_);
      live_cv_.wait(lock, [this] { return live_stopping_ || !live_queue_.empty(); });
      if (live_stopping_) return;
      batch.swap(live_queue_);
      live_bytes_ = 0;
    }
    for (auto const& [subject, data] : batch) conn_.publish_live(subject, data);
    batch.clear();
  }
}

}  // namespace petchat::federation::detail
