#include "federation/detail/inbound.hpp"

#include <algorithm>
#include <cstdlib>

#include "base/format/format.hpp"

namespace petchat::federation::detail {
namespace {

constexpr std::int64_t ephemeral_max_age_ms = 30000;
constexpr std::size_t max_purges_unread = 4;   // subjects of unlisted regions purged per stream info (each second)
constexpr std::int64_t min_origin_share = 16;  // messages of one origin the stream holds, at least

}  // namespace

inbound_stream::inbound_stream(link_state& state, nats_connection& conn, inbound_applier& applier,
                               outbound_lanes& lanes, link::ephemeral_handler on_ephemeral)
    : s_(state), conn_(conn), applier_(applier), lanes_(lanes), on_ephemeral_(std::move(on_ephemeral)) {}

bool inbound_stream::setup() {
  std::uint64_t last_seq = 0;
  share_ = 0;  // (a server upgraded meanwhile may keep shares now)
  std::optional<std::int64_t> held;
  if (!largest_held(held) || !ensure_stream(last_seq, held) || !subscribe_listed(last_seq, true)) return false;
  s_.clear_error();
  return true;
}

// Every region the directory lists (but this one) gets its consumer and live subscription
// where they are missing or dead (NATS.c gives up an ordered consumer whose re-creation
// failed, say at a JetStream timeout: looked at every round, not only after a reconnect);
// one that cannot be made does not keep the others from theirs. A region taken out of the directory keeps
// them: what it sends is refused (unknown_region) as before, and its lane goes on when it
// is listed again. Only `setting_up`, with `last_seq` read just now, is the stream checked
// for having been recreated: a figure a second old is behind what was queued since.
bool inbound_stream::subscribe_listed(std::uint64_t last_seq, bool setting_up) {
  auto regions = s_.dir.all();
  bool all = true;
  for (auto const& r : *regions) {
    if (r.name == s_.dir.self()) continue;
    auto& o = origins_[r.name];
    if (!o) o = std::make_unique<origin_subs>(this, applier_.add(r.name));
    if (setting_up && o->fed && last_seq < o->queue.last_queued) {
      // The stream is shorter than what was read: the server lost its store and the stream
      // was created anew. Read the new one from its start.
      s_.log->warn(
          "federation: stream {} ends at {} but {} was read from {}: it was recreated; reading it from the start",
          s_.names.stream, last_seq, o->queue.last_queued.load(), r.name);
      drop(o->fed);
      applier_.restart_at(o->queue, 0, 0, true);
    }
    bool dead = o->fed && !natsSubscription_IsValid(o->fed);
    std::uint64_t upto = last_seq;
    if (dead && !setting_up) {
      s_.log->warn("federation: the consumer of {} ended; consuming it again", s_.names.fed_from(r.name));
      // Between reconnects the stream is the one read so far: what the consumer queued
      // after `last_seq` was read is no sign of a recreated stream.
      upto = std::max(last_seq, o->queue.last_queued.load());
    }
    if ((!o->fed || dead) && !subscribe_inbound(*o, upto)) all = false;
    if (!o->live) {
      auto subject = s_.names.live_from(r.name);
      auto s = natsConnection_Subscribe(&o->live, conn_.nc(), subject.c_str(), &on_live, this);
      if (s != NATS_OK) {
        o->live = nullptr;
        s_.set_error("cannot subscribe to " + subject + ": " + nats_error(s));
        all = false;
      }
    }
  }
  return all;
}

// Each origin's share of the stream, in messages. The stream refuses an origin's envelopes
// past its share whatever the others hold (DiscardNewPerSubject: the subjects are per
// origin), so one origin, back from a long partition or flooding with its genuine key, can
// never fill the stream against the others. The shares of the listed origins (and one more
// for the subjects of unlisted ones, purged every second) of messages as large as the servers
// take fit in max_stream_bytes.
std::int64_t inbound_stream::origin_share() const {
  auto regions = s_.dir.all();
  std::int64_t shares = 1;
  for (auto const& r : *regions)
    if (r.name != s_.dir.self()) ++shares;
  auto largest = std::max<std::int64_t>(1, natsConnection_GetMaxPayload(conn_.nc()));
  return std::max(min_origin_share, static_cast<std::int64_t>(s_.opt.max_stream_bytes) / (largest * shares));
}

// Sets `held` to the most messages one subject holds in the stream now, or nullopt if there
// is no stream yet; false (the error set) if the stream could not be read.
bool inbound_stream::largest_held(std::optional<std::int64_t>& held) {
  held.reset();
  jsStreamInfo* si = nullptr;
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = s_.names.inbound_filter.c_str();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  auto s = js_GetStreamInfo(&si, conn_.js(), s_.names.stream.c_str(), &o, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) return true;
  if (s != NATS_OK) {
    s_.set_error("cannot read stream " + s_.names.stream + ": " + nats_error(s, jerr));
    return false;
  }
  std::int64_t most = 0;
  if (si->State.Subjects)
    for (int i = 0; i < si->State.Subjects->Count; ++i)
      most = std::max(most, static_cast<std::int64_t>(si->State.Subjects->List[i].Msgs));
  jsStreamInfo_Destroy(si);
  held = most;
  return true;
}

// Limits retention: a full stream (or an origin's full share of it) refuses new envelopes,
// and senders keep their outbox. The share is set no lower than what an origin holds now
// (`held`, when known): under it the server would drop the excess, oldest first, and the
// sender would see gaps until it sent them again. It comes down as the origins are purged.
bool inbound_stream::ensure_stream(std::uint64_t& last_seq, std::optional<std::int64_t> held) {
  auto share = std::max(origin_share(), held.value_or(0));
  jsStreamConfig sc;
  jsStreamConfig_Init(&sc);
  sc.Name = s_.names.stream.c_str();
  char const* subjects[] = {s_.names.inbound_filter.c_str()};
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Storage = js_FileStorage;
  sc.Retention = js_LimitsPolicy;
  sc.MaxAge = static_cast<int64_t>(s_.opt.retention_s) * 1'000'000'000;
  sc.MaxBytes = static_cast<int64_t>(s_.opt.max_stream_bytes);
  sc.Discard = js_DiscardNew;
  if (share_ >= 0) {
    sc.MaxMsgsPerSubject = share;
    sc.DiscardNewPerSubject = true;
  }
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, conn_.js(), &sc, nullptr, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr) s = js_UpdateStream(&si, conn_.js(), &sc, nullptr, &jerr);
  if (s != NATS_OK) {
    s_.set_error("cannot create stream " + s_.names.stream + ": " + nats_error(s, jerr));
    return false;
  }
  if (share_ >= 0 && !si->Config->DiscardNewPerSubject) {
    // A server before 2.9 drops the field and would keep the limit by discarding an origin's
    // oldest envelopes (which its sender counts as published): set as before, no shares.
    s_.log->warn(
        "federation: the NATS server keeps no per-origin share of stream {} (DiscardNewPerSubject needs "
        "nats-server 2.9 or later): one region can fill it against the others",
        s_.names.stream);
    share_ = -1;
    jsStreamInfo_Destroy(si);
    return ensure_stream(last_seq, std::nullopt);
  }
  if (share_ >= 0) share_ = share;
  last_seq = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  return true;
}

// An ordered consumer of one origin's subject from after what was applied (or queued, in
// this process) from it.
bool inbound_stream::subscribe_inbound(origin_subs& o, std::uint64_t last_seq) {
  drop(o.fed);
  auto const& origin = o.queue.origin;
  auto applied = s_.store.inbound_position(origin);
  std::uint64_t from = std::max(applied, o.queue.last_queued.load());
  bool recreated = from > last_seq;
  if (recreated) {
    s_.log->warn(
        "federation: stream {} ends at {} but {} was applied from {}: it was recreated; reading it from the start",
        s_.names.stream, last_seq, from, origin);
    from = 0;
  }
  applier_.restart_at(o.queue, from, recreated ? 0 : applied, recreated);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = s_.names.stream.c_str();
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = from + 1;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  auto subject = s_.names.fed_from(origin);
  auto s = js_Subscribe(&o.fed, conn_.js(), subject.c_str(), &on_inbound, &o, nullptr, &so, &jerr);
  if (s != NATS_OK) {
    o.fed = nullptr;
    s_.set_error("cannot consume " + subject + " from stream " + s_.names.stream + ": " + nats_error(s, jerr));
    return false;
  }
  natsSubscription_SetPendingLimits(o.fed, -1, -1);  // the applier's queue is the back-pressure
  s_.log->info("federation: consuming {} from stream seq {}", subject, from + 1);
  return true;
}

void inbound_stream::drop(natsSubscription*& sub) {
  if (!sub) return;
  if (natsSubscription_Drain(sub) == NATS_OK) natsSubscription_WaitForDrainCompletion(sub, 2000);
  natsSubscription_Destroy(sub);
  sub = nullptr;
}

// As the node purges what it applied every few seconds, what the stream holds is what
// waits to be applied.
void inbound_stream::refresh_info() {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = s_.names.inbound_filter.c_str();
  if (js_GetStreamInfo(&si, conn_.js(), s_.names.stream.c_str(), &o, &jerr) != NATS_OK) return;
  std::map<std::string, std::uint64_t> by_origin;
  std::vector<std::string> unread;  // subjects of regions the directory never listed: nothing reads them
  if (si->State.Subjects)
    for (int i = 0; i < si->State.Subjects->Count; ++i) {
      auto const& subject = si->State.Subjects->List[i];
      auto origin = last_token(subject.Subject);
      by_origin[origin] += subject.Msgs;
      if (!s_.dir.is_remote(origin) && !origins_.count(origin)) unread.emplace_back(subject.Subject);
    }
  auto last_seq = si->State.LastSeq;
  std::int64_t most = 0;
  for (auto const& [origin, count] : by_origin) most = std::max(most, static_cast<std::int64_t>(count));
  s_.set_stream_figures(last_seq, std::move(by_origin));
  jsStreamInfo_Destroy(si);
  subscribe_listed(last_seq, false);  // the directory may list more regions since (a reload)
  // And so the origins' shares change (or the servers' max_payload): the stream is told.
  // (What the origins hold is read again just before: the subscriptions above may have taken
  // a while, and they publish meanwhile.)
  std::optional<std::int64_t> held;
  if (share_ > 0 && std::max(origin_share(), most) != share_ && largest_held(held) && held) {
    std::uint64_t ignored = 0;
    ensure_stream(ignored, held);
  }
  // A few a round: each is a blocking call on this thread, which also publishes.
  if (unread.size() > max_purges_unread) unread.resize(max_purges_unread);
  // Before, a consumer of every origin refused them as unknown_region and they were purged
  // with the rest; their origin (if it is one) sends them again from its outbox.
  for (auto const& subject : unread)
    if (purge(subject, 0)) s_.count(reject_reason::unknown_region, "envelopes on " + subject);
}

// Purges `subject` from the stream, up to but not including stream seq `before` (0: all of it).
bool inbound_stream::purge(std::string const& subject, std::uint64_t before) {
  jsOptions p;
  jsOptions_Init(&p);
  p.Stream.Purge.Subject = subject.c_str();
  p.Stream.Purge.Sequence = before;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  auto s = js_PurgeStream(conn_.js(), s_.names.stream.c_str(), &p, &jerr);
  if (s != NATS_OK)
    // Harmless for correctness (applied seqs are skipped on reading), but the stream grows
    // toward its limit: say so; the caller tries again next time.
    s_.log->warn("federation: cannot purge {} from stream {} before seq {}: {}", subject, s_.names.stream, before,
                 nats_error(s, jerr));
  return s == NATS_OK;
}

void inbound_stream::purge_applied(bool all) {
  for (auto& [origin, o] : origins_) {
    // What this process applied from this stream instance (the stored position may belong
    // to a stream that was since recreated).
    std::uint64_t upto = o->queue.applied_seq;
    if (upto == 0 || upto == o->purged_upto) continue;
    if (!all && (share_ <= 0 || upto < o->purged_upto + std::uint64_t(std::max<std::int64_t>(1, share_ / 4)))) continue;
    if (purge(s_.names.fed_from(origin), upto + 1)) o->purged_upto = upto;
  }
}

// Every subscription starts draining at once, and all share one 2 s wait.
void inbound_stream::drain() {
  if (!conn_.up()) return;  // nothing in flight without a connection; a drain could only wait
  std::vector<natsSubscription*> draining;
  for (auto& [origin, o] : origins_)
    for (auto* sub : {o->fed, o->live})
      if (sub && natsSubscription_Drain(sub) == NATS_OK) draining.push_back(sub);
  auto deadline = clock::now() + std::chrono::seconds(2);
  for (auto* sub : draining) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    natsSubscription_WaitForDrainCompletion(sub, std::max<std::int64_t>(left, 1));
  }
}

void inbound_stream::destroy() {
  for (auto& [origin, o] : origins_)
    for (auto** sub : {&o->fed, &o->live})
      if (*sub) {
        natsSubscription_Destroy(*sub);
        *sub = nullptr;
      }
}

// --- NATS.c threads ----------------------------------------------------------------------

void inbound_stream::on_inbound(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto& o = *static_cast<origin_subs*>(closure);
  auto* me = o.owner;
  auto instance = me->applier_.instance(o.queue);
  jsMsgMetaData* meta = nullptr;
  std::uint64_t seq = 0;
  if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
    seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
  }
  if (seq == 0 || seq <= o.queue.last_queued) {  // not from the stream, or seen already
    natsMsg_Destroy(msg);
    return;
  }
  std::string_view data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  auto opened = open(data, last_token(natsMsg_GetSubject(msg)), me->s_.dir);
  natsMsg_Destroy(msg);
  for (auto r : opened.refused) me->s_.count(r, "stream seq " + std::to_string(seq));
  std::vector<local_store::inbound> items;
  for (auto& item : opened.bodies)
    items.push_back({seq, opened.lane_epoch, opened.lane_base, opened.lane_floor, std::move(item.content), item.refused,
                     o.queue.origin});
  if (items.empty())  // nothing to apply; the position moves
    items.push_back({seq, 0, 0, std::nullopt, std::nullopt, std::nullopt, o.queue.origin});
  me->applier_.push(o.queue, std::move(items), instance);
}

void inbound_stream::on_live(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* me = static_cast<inbound_stream*>(closure);
  std::string_view data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  auto opened = open(data, last_token(natsMsg_GetSubject(msg)), me->s_.dir);
  natsMsg_Destroy(msg);
  for (auto r : opened.refused) me->s_.count(r, "live subject");
  for (auto const& item : opened.bodies) {
    if (item.refused)
      me->s_.count(*item.refused, "live subject");
    else
      me->handle_live(item.content);
  }
}

void inbound_stream::handle_live(body const& b) {
  if (!b.has_presence() && !b.has_typing() && !b.has_lane_ack()) {
    s_.count(reject_reason::malformed, "durable kind on live subject");
  } else if (b.has_lane_ack()) {  // monotonic and epoch-checked: safe at any age (no clock skew issue)
    lanes_.note_ack(b.origin(), b.lane_ack(), b.created_at_ms());
    s_.wake();
  } else if (std::int64_t created = b.created_at_ms(), now = format::now_ms();
             created < now - ephemeral_max_age_ms || created > now + ephemeral_max_age_ms) {  // no overflow
    s_.count(reject_reason::stale, "live envelope from " + b.origin());
  } else if (on_ephemeral_) {
    // A NATS thread: a failure in the node's handler (a store read) must cost this
    // envelope, never the process.
    try {
      on_ephemeral_(b);
    } catch (std::exception const& e) {
      s_.log->error("federation: handling a live envelope from {} failed: {}", b.origin(), e.what());
    }
  }
}

}  // namespace petchat::federation::detail
