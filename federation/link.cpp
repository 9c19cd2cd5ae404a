// The NATS link: the parts in detail/ put together, the manager thread's loop, stopping,
// and status. Who runs where, and the lock order: federation/LOCKING.md.
//
//   detail/link_state  what the parts share: inputs, flags, counters, last error, wake-up
//   detail/connection  the NATS connection and JetStream context, connection callbacks
//   detail/inbound     the region's stream, a consumer and a live subscription per origin
//   detail/applier     a queue per origin and the applier thread
//   detail/publisher   outboxes to JetStream, confirmations, presence, live envelopes
//   detail/outbound    what goes out next to each region (positions, resends, epoch)
#include <pthread.h>

#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/format/format.hpp"
#include "federation/detail/applier.hpp"
#include "federation/detail/assets.hpp"
#include "federation/detail/connection.hpp"
#include "federation/detail/inbound.hpp"
#include "federation/detail/link_state.hpp"
#include "federation/detail/outbound.hpp"
#include "federation/detail/publisher.hpp"
#include "federation/federation.hpp"

namespace petchat::federation {
namespace {

using namespace std::chrono_literals;
using detail::clock;

constexpr auto stream_info_every = 1s;
constexpr auto confirm_every = 1s;  // lane_acks to every origin
constexpr auto purge_every = 2s;    // when something was applied since the last purge
// A bundle waits for more (federation.batch_delay_ms) only while fewer than this many
// requests queued envelopes: under load it leaves at once, since it is full enough that
// its signature, JetStream message and the commit applying it are shared widely.
constexpr std::uint64_t gather_enough = 8;

}  // namespace

struct link::impl {
  detail::link_state state;
  detail::outbound_lanes lanes;
  detail::nats_connection conn;
  detail::inbound_applier applier;
  detail::inbound_stream inbound;
  detail::asset_exchange assets;
  detail::publisher out;
  std::thread manager;
  // drop_outbox's requests, done by the manager between rounds; none taken once it ended.
  struct drop_request {
    std::string region;
    std::promise<local_store::dropped> done;
  };
  std::promise<void> manager_ended;  // set as the manager thread returns
  std::mutex drops_mutex;
  std::vector<drop_request> drops;  // guarded by drops_mutex
  bool manager_running = false;     // guarded by drops_mutex

  impl(options o, directory const& d, secret_key k, local_store& s, ephemeral_handler e, presence_source p,
       std::shared_ptr<spdlog::logger> l)
      : state(std::move(o), d, k, s, std::move(l)),
        lanes(state.opt, state.dir, state.store, state.log),
        conn(state),
        applier(state),
        inbound(state, conn, applier, lanes, std::move(e)),
        assets(state, conn),
        out(state, conn, lanes, std::move(p)) {}

  // The manager thread: every blocking NATS call. Confirmations go first in a round: a
  // publish round to an unreachable region can take publish_timeout_ms, and late
  // confirmations make other regions resend.
  void run_manager() {
    pthread_setname_np(pthread_self(), "fed-manager");  // seen in top -H, perf, gdb
    if (!conn.open()) state.closed = true;              // tried again below, as a connection NATS.c gave up
    {
      std::lock_guard lock(drops_mutex);
      manager_running = true;
    }
    auto next_info = clock::now();
    auto next_confirm = clock::now();
    auto next_purge = clock::now() + purge_every;
    auto next_presence = clock::now();
    auto next_open = clock::now();
    auto open_wait = 1s;
    std::optional<clock::time_point> connected_at;  // since when the connection is up
    while (!state.stopping) {
      serve_drops();
      if (state.closed && clock::now() >= next_open) {
        // A new connection, new subscriptions (the old ones went with the old connection),
        // tried again at growing intervals up to a minute while it cannot be made.
        inbound.destroy();
        assets.destroy();
        state.closed = false;
        state.need_setup = true;
        if (!conn.reopen()) state.closed = true;
        next_open = clock::now() + open_wait;  // a connection NATS.c gives up again waits too
        open_wait = std::min<std::chrono::seconds>(open_wait * 2, 60s);
      }
      // Back to short waits only once a connection held a minute (one given up at once,
      // each time, must not be opened anew every second).
      if (!state.connected) connected_at.reset();
      if (state.connected && !connected_at) connected_at = clock::now();
      if (connected_at && clock::now() - *connected_at >= 60s) open_wait = 1s;
      bool busy = false;
      if (state.connected) {
        try {
          if (state.need_setup.exchange(false) && !(inbound.setup() && assets.setup())) state.need_setup = true;
          if (clock::now() >= next_confirm) {
            out.send_confirmations();
            next_confirm = clock::now() + confirm_every;
          }
          state.begin_round();
          busy = out.publish_round();
          auto now = clock::now();
          if (now >= next_info) {
            inbound.refresh_info();
            next_info = now + stream_info_every;
          }
          // Every purge_every, and sooner for an origin whose applied position moved a
          // quarter of its share since its last purge (a share counts what is applied until
          // it is purged).
          bool all = now >= next_purge;
          inbound.purge_applied(all);
          if (all) next_purge = now + purge_every;
          if (now >= next_presence) {
            out.refresh_presence();
            next_presence = now + std::chrono::seconds(state.opt.presence_interval_s);
          }
        } catch (std::exception const& e) {
          state.set_error(std::string("federation link: ") + e.what());
        }
      }
      // Bundles by time as well as by size: woken after a pause, the link waits up to
      // batch_delay_ms for more to publish (at 2,000 messages/s, about eight envelopes a
      // bundle instead of one); a round that published goes on at once.
      bool woken = !busy && state.pause(state.need_setup ? 500ms : 200ms);
      if (woken && state.opt.batch_delay_ms > 0)
        state.gather(std::chrono::milliseconds(state.opt.batch_delay_ms), gather_enough);
    }
    std::vector<drop_request> left;
    {
      std::lock_guard lock(drops_mutex);
      manager_running = false;
      left.swap(drops);
    }
    for (auto& r : left) r.done.set_value({local_store::dropped::outcome::failed, 0, "the node is stopping"});
  }

  // On the manager thread, so that no round has the lane in hand: the store gives up the
  // entries, then the lane's state in memory goes (listed again, it is read afresh; also
  // after a drop that failed half-way, whose epoch or erasures would not match it).
  void serve_drops() {
    std::vector<drop_request> todo;
    {
      std::lock_guard lock(drops_mutex);
      todo.swap(drops);
    }
    using outcome = local_store::dropped::outcome;
    for (auto& r : todo) {
      local_store::dropped out{outcome::listed, 0, {}};
      if (r.region != state.dir.self() && !state.dir.is_remote(r.region)) {
        try {
          out = state.store.outbox_drop(r.region);
        } catch (std::exception const& e) {
          out = {outcome::failed, 0, e.what()};
        }
        lanes.forget_lane(r.region);
        if (out.what == outcome::done)
          state.log->warn("federation: dropped the outbox to {} ({} entries), on an operator's request", r.region,
                          out.entries);
      }
      r.done.set_value(std::move(out));
    }
  }
};

link::link(options o, directory const& dir, secret_key key, local_store& store, ephemeral_handler on_ephemeral,
           presence_source presence_snapshot, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<impl>(std::move(o), dir, key, store, std::move(on_ephemeral), std::move(presence_snapshot),
                                   std::move(log))) {}

link::~link() {
  stop();
}

void link::start() {
  impl_->applier.start();
  impl_->out.start_live();
  impl_->manager = std::thread([m = impl_.get()] {
    m->run_manager();
    m->manager_ended.set_value();
  });
}

// The order matters: the manager first (no new NATS calls), then the subscriptions drain
// while the applier still runs (a callback blocked on a full queue ends), then the applier,
// the subscriptions and the connection.
void link::stop() {
  if (!impl_) return;
  auto& m = *impl_;
  if (m.state.stopping.exchange(true)) return;
  m.state.wake();
  // A thread inside a NATS write to a server that stopped reading holds it up to the write
  // deadline (a minute); systemd gives the whole stop 15 s. Past 5 s such threads are left
  // behind with the link's state (the process is ending), the applier stopped first.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  bool ended = !m.manager.joinable() || m.manager_ended.get_future().wait_until(deadline) == std::future_status::ready;
  if (m.manager.joinable()) ended ? m.manager.join() : m.manager.detach();
  if (!m.out.stop_live(deadline) || !ended) {
    m.state.log->warn("federation: a NATS call did not return within 5 s; stopping without waiting for it");
    m.applier.stop();
    static_cast<void>(impl_.release());
    return;
  }
  m.inbound.drain();
  m.assets.drain();  // an answer in progress reads through the node's asset service
  m.applier.stop();
  m.inbound.destroy();
  m.assets.destroy();
  // A callback may still be on its way: keep its state alive (the process is ending).
  if (!m.conn.close()) static_cast<void>(impl_.release());
}

// After stop() the state may have been let go (see its end): every entry point checks.
void link::wake() {
  if (impl_) impl_->state.wake();
}

void link::send_ephemeral(std::string const& destination, body b) {
  if (impl_) impl_->out.send_ephemeral(destination, std::move(b));
}

void link::observe_applied(applied_fn fn) {
  if (impl_) impl_->state.on_applied = std::move(fn);
}

void link::serve_assets(asset_server server) {
  if (impl_) impl_->assets.serve(std::move(server));
}

std::optional<asset_piece> link::fetch_asset(std::string const& region, asset_request const& request, int timeout_ms) {
  if (!impl_) return std::nullopt;
  return impl_->assets.fetch(region, request, timeout_ms);
}

bool link::connected() const {
  return impl_ && impl_->state.connected.load();
}

std::uint64_t link::published() const {
  return impl_ ? impl_->state.published.load() : 0;
}

std::uint64_t link::applied() const {
  return impl_ ? impl_->state.applied.load() : 0;
}

std::uint64_t link::rejected() const {
  return impl_ ? impl_->state.rejected_total() : 0;
}

std::future<local_store::dropped> link::drop_outbox(std::string const& region) {
  std::promise<local_store::dropped> done;
  auto result = done.get_future();
  if (!impl_) {
    done.set_value({local_store::dropped::outcome::failed, 0, "federation is not running"});
    return result;
  }
  auto& m = *impl_;
  {
    std::lock_guard lock(m.drops_mutex);
    if (m.manager_running) {
      m.drops.push_back({region, std::move(done)});
    } else {
      done.set_value({local_store::dropped::outcome::failed, 0,
                      "the federation link is not running (petchatctl federation status says why)"});
      return result;
    }
  }
  m.state.wake();
  return result;
}

status link::snapshot() {
  if (!impl_) return {};
  auto& m = *impl_;
  auto [s, inbound] = m.state.stream_figures();
  s.enabled = true;
  s.connected = m.state.connected && m.conn.up();
  s.server = s.connected ? m.conn.server_url() : "";
  s.stream = m.state.names.stream;
  s.inbound_backlog = 0;
  for (auto const& [origin, n] : inbound) s.inbound_backlog += n;
  s.published = m.state.published;
  s.applied = m.state.applied;
  auto confirmed = m.lanes.confirmed();
  auto now = format::now_ms();
  auto regions = m.state.dir.all();
  for (auto const& r : *regions) {
    if (r.name == m.state.dir.self()) continue;
    region_status rs{r.name, true, 0, 0, inbound.count(r.name) ? inbound[r.name] : 0};
    s.applied_position = std::max(s.applied_position, m.state.store.inbound_position(r.name));
    auto it = confirmed.find(r.name);
    auto backlog =
        m.state.store.outbox_backlog(r.name, it != confirmed.end() ? it->second : m.state.store.outbox_start(r.name));
    rs.outbox = backlog.entries;
    rs.oldest_undelivered_ms = backlog.entries ? std::max<std::int64_t>(0, now - backlog.oldest_created_at_ms) : 0;
    s.regions.push_back(rs);
  }
  // Regions out of the directory whose outbox still holds entries (drop_outbox gives them up).
  for (auto const& dest : m.state.store.outbox_destinations()) {
    if (dest == m.state.dir.self() || m.state.dir.is_remote(dest)) continue;
    auto backlog = m.state.store.outbox_backlog(dest, m.state.store.outbox_start(dest));
    if (backlog.entries == 0) continue;
    s.regions.push_back(
        {dest, false, backlog.entries, std::max<std::int64_t>(0, now - backlog.oldest_created_at_ms), 0});
  }
  s.rejects = m.state.rejected_by_reason();
  return s;
}

}  // namespace petchat::federation
