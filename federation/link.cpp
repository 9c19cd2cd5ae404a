// The NATS link: connection management, the region's inbound stream and its ordered
// consumer, the outbox publisher and the ephemeral subjects.
//
// Threads: the manager thread does every blocking NATS call (stream setup, publishing,
// stream info, purge). NATS.c's own threads run the subscription callbacks, which only
// verify envelopes and queue them. The applier thread hands queued batches to the store.
#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>
#include <tuple>

#include "federation/detail/outbound.hpp"
#include "federation/federation.hpp"

namespace petchat::federation {
namespace {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t publish_batch = 1024;       // outbox entries per round and destination
constexpr std::size_t bundle_entries = 256;       // bodies per envelope
constexpr std::size_t bundle_bytes = 512 * 1024;  // and bytes (NATS's default max payload is 1 MiB)
constexpr std::size_t max_queued = 64;            // inbound envelopes (bundles) waiting to be applied
constexpr std::size_t apply_batch = 512;          // bodies per apply, whole bundles only
constexpr auto stream_info_every = 1s;
constexpr auto confirm_every = 1s;  // lane_acks to every origin
constexpr auto purge_every = 2s;    // when something was applied since the last purge
constexpr auto max_backoff = 30s;
constexpr std::int64_t ephemeral_max_age_ms = 30000;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string last_token(std::string_view subject) {
  auto dot = subject.rfind('.');
  return std::string(dot == std::string_view::npos ? subject : subject.substr(dot + 1));
}

std::string nats_error(natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0)) {
  std::string out = natsStatus_GetText(s);
  if (jerr != 0) out += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (char const* last = nats_GetLastError(nullptr); last && *last) out += ": " + std::string(last);
  return out;
}

}  // namespace

struct link::impl {
  options opt;
  directory const& dir;
  secret_key key;
  local_store& store;
  ephemeral_handler on_ephemeral;
  presence_source presence_snapshot;
  std::shared_ptr<spdlog::logger> log;
  detail::outbound_lanes lanes;  // what goes out next to each region (confirmations, resends)

  std::string stream_name;
  std::string inbound_filter;  // <prefix>.v1.fed.<self>.*
  std::string live_filter;     // <prefix>.v1.live.<self>.*

  natsOptions* nopts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsSubscription* inbound_sub = nullptr;  // manager thread only
  natsSubscription* live_sub = nullptr;

  std::atomic<bool> stopping{false};
  std::atomic<bool> connected{false};
  std::string unreachable_since;  // UTC time NATS was lost, for last_error (guarded by status_mutex)
  std::atomic<bool> need_setup{true};
  std::atomic<int> publish_failures{0};
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> applied{0};
  std::atomic<std::uint64_t> last_queued{0};  // highest stream seq queued (or applied)
  std::atomic<std::uint64_t> applied_seq{0};  // stream seq of the last batch applied by this process
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(reject_reason::count_)> rejects{};

  std::thread manager;
  std::thread applier;
  std::atomic<natsConnection*> live_nc{nullptr};  // for send_ephemeral from other threads
  std::mutex closed_mutex;
  std::condition_variable closed_cv;
  bool closed = false;  // the connection's last callback ran (guarded by closed_mutex)
  std::mutex wake_mutex;
  std::condition_variable wake_cv;
  bool woken = false;  // guarded by wake_mutex

  std::mutex queue_mutex;
  std::condition_variable queue_filled, queue_drained;
  // One entry per inbound envelope: its bodies share the stream seq and are applied in
  // the same write, so a stored position never splits an envelope.
  std::deque<std::vector<local_store::inbound>> queue;  // guarded by queue_mutex
  bool applier_stop = false;                            // guarded by queue_mutex

  std::mutex status_mutex;
  status cached;                                           // stream figures and last error, guarded by status_mutex
  std::map<std::string, std::uint64_t> inbound_by_origin;  // envelopes in the stream per origin (guarded)
  std::uint64_t purged_upto = 0;                           // manager thread only

  std::map<std::string, std::pair<clock::time_point, clock::duration>> backoff;  // manager thread only
  std::mutex log_mutex;
  std::map<reject_reason, clock::time_point> last_logged;  // guarded by log_mutex

  impl(options o, directory const& d, secret_key k, local_store& s, ephemeral_handler e, presence_source p,
       std::shared_ptr<spdlog::logger> l)
      : opt(std::move(o)),
        dir(d),
        key(k),
        store(s),
        on_ephemeral(std::move(e)),
        presence_snapshot(std::move(p)),
        log(std::move(l)),
        lanes(opt, dir, store, log) {
    stream_name = opt.subject_prefix + "-in-" + dir.self();
    inbound_filter = opt.subject_prefix + ".v1.fed." + dir.self() + ".*";
    live_filter = opt.subject_prefix + ".v1.live." + dir.self() + ".*";
  }

  std::string fed_subject(std::string const& destination) const {
    return opt.subject_prefix + ".v1.fed." + destination + "." + dir.self();
  }
  std::string live_subject(std::string const& destination) const {
    return opt.subject_prefix + ".v1.live." + destination + "." + dir.self();
  }

  static std::string utc_now_text() {
    auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char out[32];
    std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
  }

  void set_error(std::string what) {
    log->warn("federation: {}", what);
    std::lock_guard lock(status_mutex);
    cached.last_error = std::move(what);
  }

  void count(reject_reason r, std::string_view detail) {
    rejects[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
    auto now = clock::now();
    std::lock_guard lock(log_mutex);
    auto& last = last_logged[r];
    if (now - last < 10s) return;  // a flood of garbage must not flood the log
    last = now;
    log->warn("federation: refused an envelope ({}){}{} (repeats within 10 s are only counted)", to_string(r),
              detail.empty() ? "" : ": ", detail);
  }

  void wake() {
    {
      std::lock_guard lock(wake_mutex);
      woken = true;
    }
    wake_cv.notify_one();
  }

  // --- NATS callbacks (NATS.c threads) -----------------------------------------------------

  static void on_connected(natsConnection*, void* self) {
    auto* me = static_cast<impl*>(self);
    me->connected = true;
    me->need_setup = true;
    me->log->info("federation: connected to NATS");
    me->wake();
  }
  static void on_disconnected(natsConnection* nc, void* self) {
    auto* me = static_cast<impl*>(self);
    if (me->stopping) return;
    bool was = me->connected.exchange(false);
    std::string why = connection_error(nc);
    if (was)
      me->log->warn("federation: lost the NATS connection{}{}; local work goes on, federation traffic waits",
                    why.empty() ? "" : ": ", why);
    // Said at once, and as what it is: all of NATS is gone, not one region.
    std::string since;
    {
      std::lock_guard lock(me->status_mutex);
      if (was || me->unreachable_since.empty()) me->unreachable_since = utc_now_text();
      since = me->unreachable_since;
    }
    me->set_error("NATS unreachable since " + since + (why.empty() ? "" : " (" + why + ")"));
  }
  static void on_closed(natsConnection*, void* self) {
    auto* me = static_cast<impl*>(self);
    std::lock_guard lock(me->closed_mutex);
    me->closed = true;
    me->closed_cv.notify_all();
  }
  // Asynchronous errors: authorization refused, permissions, slow consumer...
  static void on_error(natsConnection* nc, natsSubscription*, natsStatus err, void* self) {
    auto* me = static_cast<impl*>(self);
    std::string why = connection_error(nc);
    me->set_error("NATS: " + (why.empty() ? std::string(natsStatus_GetText(err)) : why));
  }
  static std::string connection_error(natsConnection* nc) {
    char const* text = nullptr;
    if (nc && natsConnection_GetLastError(nc, &text) != NATS_OK && text) return text;
    return {};
  }

  static void on_inbound(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
    auto* me = static_cast<impl*>(self);
    jsMsgMetaData* meta = nullptr;
    std::uint64_t seq = 0;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
      seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
    }
    if (seq == 0 || seq <= me->last_queued.load()) {  // not from the stream, or seen already
      natsMsg_Destroy(msg);
      return;
    }
    std::string_view data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    auto opened = open(data, last_token(natsMsg_GetSubject(msg)), me->dir);
    natsMsg_Destroy(msg);
    for (auto r : opened.refused) me->count(r, "stream seq " + std::to_string(seq));
    std::vector<local_store::inbound> items;
    for (auto& item : opened.bodies)
      items.push_back({seq, opened.lane_epoch, opened.lane_base, std::move(item.content), item.refused});
    if (items.empty())
      items.push_back({seq, 0, 0, std::nullopt, std::nullopt});  // nothing to apply; the position moves
    std::unique_lock lock(me->queue_mutex);
    me->queue_drained.wait(lock, [me] { return me->queue.size() < max_queued || me->applier_stop; });
    if (me->applier_stop) return;
    me->queue.push_back(std::move(items));
    me->last_queued = seq;
    lock.unlock();
    me->queue_filled.notify_one();
  }

  static void on_live(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
    auto* me = static_cast<impl*>(self);
    std::string_view data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    auto opened = open(data, last_token(natsMsg_GetSubject(msg)), me->dir);
    natsMsg_Destroy(msg);
    for (auto r : opened.refused) me->count(r, "live subject");
    for (auto const& item : opened.bodies) {
      auto const& b = item.content;
      if (item.refused) {
        me->count(*item.refused, "live subject");
      } else if (!b.has_presence() && !b.has_typing() && !b.has_lane_ack()) {
        me->count(reject_reason::malformed, "durable kind on live subject");
      } else if (b.has_lane_ack()) {  // monotonic and epoch-checked: safe at any age (no clock skew issue)
        me->lanes.note_ack(b.origin(), b.lane_ack());
        me->wake();
      } else if (std::abs(wall_ms() - b.created_at_ms()) > ephemeral_max_age_ms) {
        me->count(reject_reason::stale, "live envelope from " + b.origin());
      } else if (me->on_ephemeral) {
        // A NATS thread: a failure in the node's handler (a store read) must cost this
        // envelope, never the process.
        try {
          me->on_ephemeral(b);
        } catch (std::exception const& e) {
          me->log->error("federation: handling a live envelope from {} failed: {}", b.origin(), e.what());
        }
      }
    }
  }

  static void on_publish_error(jsCtx*, jsPubAckErr* pae, void* self) {
    auto* me = static_cast<impl*>(self);
    me->publish_failures.fetch_add(1);
    (void)pae;
  }

  // --- manager thread ----------------------------------------------------------------------

  bool connect() {
    natsOptions_Create(&nopts);
    std::vector<char const*> urls;
    for (auto const& u : opt.nats_urls) urls.push_back(u.c_str());
    natsOptions_SetServers(nopts, urls.data(), static_cast<int>(urls.size()));
    natsOptions_SetName(nopts, ("petchat-node " + dir.self()).c_str());
    natsOptions_SetMaxReconnect(nopts, -1);
    natsOptions_SetReconnectWait(nopts, opt.reconnect_wait_ms);
    natsOptions_SetTimeout(nopts, opt.publish_timeout_ms);
    natsOptions_SetReconnectedCB(nopts, &impl::on_connected, this);
    natsOptions_SetDisconnectedCB(nopts, &impl::on_disconnected, this);
    natsOptions_SetErrorHandler(nopts, &impl::on_error, this);
    natsOptions_SetClosedCB(nopts, &impl::on_closed, this);
    natsStatus s = NATS_OK;
    if (!opt.credentials_file.empty())
      s = natsOptions_SetUserCredentialsFromFiles(nopts, opt.credentials_file.c_str(), nullptr);
    if (s == NATS_OK && !opt.nkey_seed_file.empty())
      s = natsOptions_SetNKeyFromSeed(nopts, opt.nkey.c_str(), opt.nkey_seed_file.c_str());
    if (s == NATS_OK && !opt.user.empty()) s = natsOptions_SetUserInfo(nopts, opt.user.c_str(), opt.password.c_str());
    if (s == NATS_OK && (!opt.tls_ca_file.empty() || !opt.tls_cert_file.empty())) {
      s = natsOptions_SetSecure(nopts, true);
      if (s == NATS_OK && !opt.tls_ca_file.empty())
        s = natsOptions_LoadCATrustedCertificates(nopts, opt.tls_ca_file.c_str());
      if (s == NATS_OK && !opt.tls_cert_file.empty())
        s = natsOptions_LoadCertificatesChain(nopts, opt.tls_cert_file.c_str(), opt.tls_key_file.c_str());
    }
    if (s != NATS_OK) {
      set_error("NATS options: " + nats_error(s));
      return false;
    }
    // One plain attempt first, which says why it failed (refused, authorization, TLS...);
    // then, if it did, one that keeps retrying in the background.
    s = natsConnection_Connect(&nc, nopts);
    if (s == NATS_OK) {
      connected = true;
    } else {
      set_error("cannot connect to NATS: " + nats_error(s) + "; retrying in the background");
      nc = nullptr;
      natsOptions_SetRetryOnFailedConnect(nopts, true, &impl::on_connected, this);
      s = natsConnection_Connect(&nc, nopts);
      if (s == NATS_OK) {
        connected = true;
      } else if (s != NATS_NOT_YET_CONNECTED) {
        set_error("cannot connect to NATS: " + nats_error(s));
        return false;
      }
    }
    live_nc = nc;
    jsOptions jo;
    jsOptions_Init(&jo);
    if (!opt.jetstream_domain.empty()) jo.Domain = opt.jetstream_domain.c_str();
    jo.Wait = opt.publish_timeout_ms;
    jo.PublishAsync.ErrHandler = &impl::on_publish_error;
    jo.PublishAsync.ErrHandlerClosure = this;
    s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK) {
      set_error("JetStream context: " + nats_error(s));
      return false;
    }
    return true;
  }

  // The region's inbound stream and the subscriptions; again after every reconnect.
  bool setup() {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream_name.c_str();
    char const* subjects[] = {inbound_filter.c_str()};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.MaxAge = static_cast<int64_t>(opt.retention_s) * 1'000'000'000;
    sc.MaxBytes = static_cast<int64_t>(opt.max_stream_bytes);
    sc.Discard = js_DiscardNew;  // a full stream refuses; senders keep their outbox
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&si, js, &sc, nullptr, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) s = js_UpdateStream(&si, js, &sc, nullptr, &jerr);
    if (s != NATS_OK) {
      set_error("cannot create stream " + stream_name + ": " + nats_error(s, jerr));
      return false;
    }
    std::uint64_t last_seq = si->State.LastSeq;
    jsStreamInfo_Destroy(si);

    if (inbound_sub && last_seq < last_queued.load()) {
      // The stream is shorter than what was read: the server lost its store and the stream
      // was created anew. Read the new one from its start.
      log->warn("federation: stream {} ends at {} but {} was read: it was recreated; reading it from the start",
                stream_name, last_seq, last_queued.load());
      drop_inbound_subscription();
      last_queued = 0;
      applied_seq = 0;
    }
    if (!inbound_sub || !natsSubscription_IsValid(inbound_sub)) {
      drop_inbound_subscription();
      std::uint64_t from = std::max(store.inbound_position(), last_queued.load());
      if (from > last_seq) {
        log->warn("federation: stream {} ends at {} but {} was applied: it was recreated; reading it from the start",
                  stream_name, last_seq, from);
        from = 0;
        applied_seq = 0;
      }
      last_queued = from;
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = stream_name.c_str();
      so.Ordered = true;
      so.Config.DeliverPolicy = js_DeliverByStartSequence;
      so.Config.OptStartSeq = from + 1;
      s = js_Subscribe(&inbound_sub, js, inbound_filter.c_str(), &impl::on_inbound, this, nullptr, &so, &jerr);
      if (s != NATS_OK) {
        inbound_sub = nullptr;
        set_error("cannot consume stream " + stream_name + ": " + nats_error(s, jerr));
        return false;
      }
      natsSubscription_SetPendingLimits(inbound_sub, -1, -1);  // the callback applies back-pressure
      log->info("federation: consuming {} from stream seq {}", stream_name, from + 1);
    }
    if (!live_sub) {
      s = natsConnection_Subscribe(&live_sub, nc, live_filter.c_str(), &impl::on_live, this);
      if (s != NATS_OK) {
        live_sub = nullptr;
        set_error("cannot subscribe to " + live_filter + ": " + nats_error(s));
        return false;
      }
    }
    {
      std::lock_guard lock(status_mutex);
      cached.last_error.clear();
      unreachable_since.clear();
    }
    return true;
  }

  void drop_inbound_subscription() {
    if (!inbound_sub) return;
    if (natsSubscription_Drain(inbound_sub) == NATS_OK) natsSubscription_WaitForDrainCompletion(inbound_sub, 2000);
    natsSubscription_Destroy(inbound_sub);
    inbound_sub = nullptr;
  }

  // Publishes the next batch of the outbox of each destination; true if anything went out.
  bool publish_round() {
    lanes.take_confirmations();
    bool progressed = false;
    for (auto const& r : dir.all()) {
      auto const& dest = r.name;
      if (dest == dir.self()) continue;
      if (stopping || !connected) break;
      auto& [until, delay] = backoff[dest];
      if (clock::now() < until) continue;
      auto next = lanes.next(dest, publish_batch);
      if (next.entries.empty()) continue;
      auto& entries = next.entries;
      publish_failures = 0;
      auto subject = fed_subject(dest);
      bool failed = false;
      std::size_t i = 0;
      while (i < entries.size() && !failed) {
        std::vector<std::string> bodies;
        std::size_t bytes = 0;
        while (i < entries.size() && bodies.size() < bundle_entries && (bodies.empty() || bytes < bundle_bytes)) {
          bytes += entries[i].body.size();
          bodies.push_back(std::move(entries[i].body));
          ++i;
        }
        auto sealed = seal(std::move(bodies), dir.self(), key, next.epoch, next.base);
        natsMsg* m = nullptr;
        natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, sealed.data(), static_cast<int>(sealed.size()));
        if (s == NATS_OK) s = js_PublishMsgAsync(js, &m, nullptr);
        natsMsg_Destroy(m);
        failed = s != NATS_OK;
      }
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = opt.publish_timeout_ms;
      if (js_PublishAsyncComplete(js, &po) != NATS_OK) {
        natsMsgList pending{};
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) natsMsgList_Destroy(&pending);
        failed = true;
      }
      if (failed || publish_failures.load() > 0) {
        delay = std::min<clock::duration>(max_backoff, delay == clock::duration::zero() ? 250ms : delay * 2);
        until = clock::now() + delay;
        if (!connected) continue;  // the disconnect already said what is wrong: NATS, not this region
        set_error("region " + dest + " did not take " + std::to_string(entries.size()) +
                  " envelopes (its stream unreachable?); retrying in " +
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()) + " ms");
        continue;
      }
      delay = clock::duration::zero();
      lanes.published(dest, entries.back().lane_seq);
      published += entries.size();
      progressed = true;
    }
    return progressed;
  }

  // Tells every origin how far this region applied its lane.
  void send_confirmations() {
    for (auto const& [origin, lane] : store.inbound_lanes()) {
      if (!dir.is_remote(origin)) continue;
      body b;
      b.mutable_lane_ack()->set_epoch(lane.epoch);
      b.mutable_lane_ack()->set_seq(lane.seq);
      send_ephemeral(origin, std::move(b));
    }
  }

  // The stream's end and what it holds per origin (the subject's last token). As the
  // node purges what it applied every few seconds, that is what waits to be applied.
  void refresh_stream_info() {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = inbound_filter.c_str();
    if (js_GetStreamInfo(&si, js, stream_name.c_str(), &o, &jerr) != NATS_OK) return;
    std::map<std::string, std::uint64_t> by_origin;
    if (si->State.Subjects)
      for (int i = 0; i < si->State.Subjects->Count; ++i)
        by_origin[last_token(si->State.Subjects->List[i].Subject)] += si->State.Subjects->List[i].Msgs;
    std::lock_guard lock(status_mutex);
    cached.stream_last_seq = si->State.LastSeq;
    inbound_by_origin = std::move(by_origin);
    jsStreamInfo_Destroy(si);
  }

  // Drops what this region has applied from its inbound stream.
  void purge_applied() {
    // What this process applied from this stream instance (the stored position may belong
    // to a stream that was since recreated).
    std::uint64_t upto = applied_seq.load();
    if (upto == 0 || upto == purged_upto) return;
    purged_upto = upto;
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = upto + 1;  // up to but not including
    jsErrCode jerr = static_cast<jsErrCode>(0);
    js_PurgeStream(js, stream_name.c_str(), &o, &jerr);
  }

  void refresh_presence() {
    if (!presence_snapshot) return;
    for (auto const& r : dir.all()) {
      if (r.name == dir.self()) continue;
      // In chunks that stay far below NATS's payload limit; `full` (users missing from it
      // are offline) only when one chunk holds everyone. Others expire on their own.
      federation::presence_update all;
      try {
        all = presence_snapshot(r.name);
      } catch (std::exception const& e) {
        log->error("federation: the presence snapshot for {} failed: {}", r.name, e.what());
        continue;
      }
      constexpr int chunk = 500;
      for (int i = 0; i < all.entries_size() || i == 0; i += chunk) {
        body b;
        auto* p = b.mutable_presence();
        for (int j = i; j < std::min(all.entries_size(), i + chunk); ++j) *p->add_entries() = all.entries(j);
        p->set_full(all.entries_size() <= chunk);
        send_ephemeral(r.name, std::move(b));
      }
    }
  }

  void send_ephemeral(std::string const& destination, body b) {
    auto* conn = live_nc.load();
    if (!connected || !conn) return;
    b.set_origin(dir.self());
    b.set_destination(destination);
    b.set_created_at_ms(wall_ms());
    auto sealed = seal({b.SerializeAsString()}, dir.self(), key);
    natsConnection_Publish(conn, live_subject(destination).c_str(), sealed.data(), static_cast<int>(sealed.size()));
  }

  void run_manager() {
    if (!connect()) return;
    auto next_info = clock::now();
    auto next_confirm = clock::now();
    auto next_purge = clock::now() + purge_every;
    auto next_presence = clock::now();
    while (!stopping) {
      bool busy = false;
      if (connected) {
        try {
          if (need_setup.exchange(false) && !setup()) need_setup = true;
          // Confirmations first: a publish round to an unreachable region can take
          // publish_timeout_ms, and late confirmations make other regions resend.
          if (clock::now() >= next_confirm) {
            send_confirmations();
            next_confirm = clock::now() + confirm_every;
          }
          busy = publish_round();
          auto now = clock::now();
          if (now >= next_info) {
            refresh_stream_info();
            next_info = now + stream_info_every;
          }
          if (now >= next_purge) {
            purge_applied();
            next_purge = now + purge_every;
          }
          if (now >= next_presence) {
            refresh_presence();
            next_presence = now + std::chrono::seconds(opt.presence_interval_s);
          }
        } catch (std::exception const& e) {
          set_error(std::string("federation link: ") + e.what());
        }
      }
      if (busy) continue;
      std::unique_lock lock(wake_mutex);
      wake_cv.wait_for(lock, need_setup ? 500ms : 200ms, [this] { return woken || stopping.load(); });
      woken = false;
    }
  }

  // --- applier thread ----------------------------------------------------------------------

  // Duplicates never reach the queue (on_inbound drops stream seqs already queued), so
  // the applier applies everything in queue order.
  void run_applier() {
    for (;;) {
      std::vector<local_store::inbound> batch;
      {
        std::unique_lock lock(queue_mutex);
        queue_filled.wait(lock, [this] { return !queue.empty() || applier_stop; });
        if (queue.empty()) return;
        while (!queue.empty() && (batch.empty() || batch.size() + queue.front().size() <= apply_batch)) {
          for (auto& item : queue.front()) batch.push_back(std::move(item));
          queue.pop_front();
        }
      }
      queue_drained.notify_all();
      if (batch.empty()) continue;
      for (;;) {
        try {
          std::size_t verified = 0;
          for (auto const& i : batch) verified += i.content ? 1 : 0;
          auto refused = store.apply(batch);
          for (auto r : refused) count(r, "");
          applied += verified - std::min(verified, refused.size());
          applied_seq = batch.back().stream_seq;
          break;
        } catch (std::exception const& e) {
          set_error(std::string("cannot apply inbound envelopes: ") + e.what());
          std::this_thread::sleep_for(1s);
          std::lock_guard lock(queue_mutex);
          if (applier_stop) return;
        }
      }
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
  impl_->applier = std::thread([this] { impl_->run_applier(); });
  impl_->manager = std::thread([this] { impl_->run_manager(); });
}

void link::stop() {
  if (!impl_) return;
  auto& m = *impl_;
  if (m.stopping.exchange(true)) return;
  m.wake();
  if (m.manager.joinable()) m.manager.join();
  // Drain before destroy: NATS.c 3.4 misbehaves when a subscription is destroyed with
  // messages in flight. The applier keeps running meanwhile, so a blocked callback ends.
  // Without a connection nothing is in flight, and a drain could only wait.
  bool up = m.nc && natsConnection_Status(m.nc) == NATS_CONN_STATUS_CONNECTED;
  for (auto* sub : {m.inbound_sub, m.live_sub}) {
    if (!sub || !up) continue;
    if (natsSubscription_Drain(sub) == NATS_OK) natsSubscription_WaitForDrainCompletion(sub, 2000);
  }
  {
    std::lock_guard lock(m.queue_mutex);
    m.applier_stop = true;
  }
  m.queue_filled.notify_all();
  m.queue_drained.notify_all();
  if (m.applier.joinable()) m.applier.join();
  for (auto* sub : {m.inbound_sub, m.live_sub})
    if (sub) natsSubscription_Destroy(sub);
  m.inbound_sub = m.live_sub = nullptr;
  if (m.js) jsCtx_Destroy(m.js);
  m.live_nc = nullptr;
  bool quiet = true;
  if (m.nc) {
    natsConnection_Close(m.nc);
    // The closed callback is the connection's last: after it no callback can touch `m`.
    std::unique_lock lock(m.closed_mutex);
    quiet = m.closed_cv.wait_for(lock, 1s, [&m] { return m.closed; });
    lock.unlock();
    natsConnection_Destroy(m.nc);
  }
  if (m.nopts) natsOptions_Destroy(m.nopts);
  m.js = nullptr;
  m.nc = nullptr;
  m.nopts = nullptr;
  // A callback may still be on its way: keep its state alive (the process is ending).
  if (!quiet) static_cast<void>(impl_.release());
}

// After stop() the state may have been let go (see its end): every entry point checks.
void link::wake() {
  if (impl_) impl_->wake();
}

void link::send_ephemeral(std::string const& destination, body b) {
  if (impl_) impl_->send_ephemeral(destination, std::move(b));
}

bool link::connected() const {
  return impl_ && impl_->connected.load();
}

std::uint64_t link::published() const {
  return impl_ ? impl_->published.load() : 0;
}

std::uint64_t link::applied() const {
  return impl_ ? impl_->applied.load() : 0;
}

std::uint64_t link::rejected() const {
  if (!impl_) return 0;
  std::uint64_t n = 0;
  for (auto const& r : impl_->rejects) n += r.load();
  return n;
}

status link::snapshot() {
  if (!impl_) return {};
  auto& m = *impl_;
  status s;
  std::map<std::string, std::uint64_t> inbound;
  {
    std::lock_guard lock(m.status_mutex);
    s = m.cached;
    inbound = m.inbound_by_origin;
  }
  s.enabled = true;
  s.connected = m.connected && m.nc && natsConnection_Status(m.nc) == NATS_CONN_STATUS_CONNECTED;
  if (s.connected) {
    char url[256] = {0};
    if (natsConnection_GetConnectedUrl(m.nc, url, sizeof url) == NATS_OK) s.server = url;
  }
  s.stream = m.stream_name;
  s.applied_position = m.store.inbound_position();
  s.inbound_backlog = s.stream_last_seq > s.applied_position ? s.stream_last_seq - s.applied_position : 0;
  s.published = m.published;
  s.applied = m.applied;
  auto confirmed = m.lanes.confirmed();
  auto now = wall_ms();
  for (auto const& r : m.dir.all()) {
    if (r.name == m.dir.self()) continue;
    region_status rs{r.name, 0, 0, inbound.count(r.name) ? inbound[r.name] : 0};
    auto it = confirmed.find(r.name);
    auto backlog = m.store.outbox_backlog(r.name, it != confirmed.end() ? it->second : m.store.outbox_start(r.name));
    rs.outbox = backlog.entries;
    rs.oldest_undelivered_ms = backlog.entries ? std::max<std::int64_t>(0, now - backlog.oldest_created_at_ms) : 0;
    s.regions.push_back(rs);
  }
  for (std::size_t i = 0; i < m.rejects.size(); ++i)
    if (auto n = m.rejects[i].load()) s.rejects[to_string(static_cast<reject_reason>(i))] = n;
  return s;
}

}  // namespace petchat::federation
