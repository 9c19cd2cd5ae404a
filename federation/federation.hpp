// Federation between regions over NATS JetStream: the region directory, signed envelopes,
// and the link that carries them. docs/FEDERATION.md is the design; in short:
//
//  - Durable kinds (messages, receipts, deletions) are written by the message service into
//    a durable outbox in the same RocksDB batch as the local change, so an `accepted`
//    never waits on NATS and a crash never loses an accepted message. The link publishes
//    each destination's outbox in lane order to that region's inbound stream, and forgets
//    entries only once the destination confirms it applied them (lane_ack); unconfirmed
//    ones are sent again.
//  - Each region owns one inbound stream. The link reads it with an ordered push consumer
//    per origin, each from the stream position the message service stored for that origin
//    with its last applied batch, so positions and effects commit together (exactly-once
//    effect); the origins take turns in the applier.
//  - Ephemeral kinds (presence, typing) and the lane confirmations go on plain NATS
//    subjects and are never stored.
//
// Threads: directory, seal, open and to_string read only immutable data: any thread. The
// link runs its own threads:
//  - the manager thread makes the blocking NATS calls (all but stop()'s and the live
//    thread's): connecting and reconnecting, stream setup, publishing the outbox, stream
//    info, purge; it makes confirmations and presence snapshots;
//  - the live thread (`fed-live`) publishes the live envelopes send_ephemeral() queues
//    (typing, presence, confirmations): no caller's thread waits on NATS for them;
//  - NATS.c's delivery threads, one per subscription, run its callbacks: an origin's
//    consumer's verifies envelopes and queues them, blocking while 64 of that origin wait
//    (back-pressure); an origin's live subject's verifies, notes lane_acks and calls the ephemeral handler. NATS.c's
//    connection callbacks only update the link's connection state;
//  - the applier thread hands queued batches to local_store::apply.
// Each local_store method and callback below says which of these calls it.
//
// Errors: the link reports problems (NATS unreachable, a region's stream refusing, a store
// failure) in status::last_error and the log, never to its callers (only snapshot() passes
// on a store exception); refused envelopes are counted by reject_reason.
//
// This folder knows nothing of WebSockets or of RocksDB: the node hands the link a
// `local_store` (the message service) and callbacks.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "federation.pb.h"
#include "federation/options.hpp"

namespace spdlog {
class logger;
}

namespace petchat::federation {

// Region name -> entry, including this region itself. Immutable once made: any thread.
// Safe on any thread; `replace` (SIGHUP, petchatctl reload) swaps the other regions while
// readers go on with the list they took.
class directory {
 public:
  using entries = std::vector<region_entry>;

  directory();
  // This region (`self_key`, o.public_url, o.location) first, then o.regions but any entry
  // named `self`. Does not fail.
  directory(std::string self, public_key self_key, options const& o);
  directory(directory const&) = delete;
  directory& operator=(directory const&) = delete;

  std::string const& self() const { return self_; }
  // The entry, kept alive by the pointer; null if not in the directory.
  std::shared_ptr<region_entry const> find(std::string_view region) const;
  bool is_remote(std::string_view region) const { return region != self_ && find(region) != nullptr; }
  // Every region, self first: a snapshot (bind it to a name before a range-for).
  std::shared_ptr<entries const> all() const { return regions_.load(); }

  // The other regions become o.regions (this region's entry stays as it is).
  void replace(options const& o);

 private:
  std::string self_;
  std::atomic<std::shared_ptr<entries const>> regions_;
};

// Why an envelope was refused. Stable names: they appear in metrics, logs and status.
// open() finds the first six (what needs no store); local_store::apply malformed,
// foreign_user and unknown_user to out_of_order; the link stale, and malformed for a
// durable kind on the live subject.
enum class reject_reason {
  // Not an envelope, an empty bundle, a body that does not parse or lacks fields, a kind
  // on the wrong transport (ephemeral in the stream, durable on the live subject), or a
  // message whose ids do not check out (not made by the origin, clashing with another).
  malformed,
  unknown_region,     // the signer is not in the directory, or claims to be this region
  bad_signature,      // signature does not verify against the signer's keys
  origin_mismatch,    // signer, body origin and subject disagree on the origin region
  wrong_destination,  // addressed to another region, or for a user of one
  // Speaks for a user of another region than the signer, or for one with no say:
  // a receipt not by the message's recipient, a deletion not by its sender.
  foreign_user,
  unknown_user,     // a message to a user of this region that does not exist
  too_large,        // a message over this region's size limits (or not UTF-8)
  unknown_message,  // a receipt for a message this region does not have (a deletion of one is no refusal)
  replayed,         // a lane position already applied, or an older lane epoch (duplicate or replay)
  out_of_order,     // a lane position ahead of the next expected one (resent later)
  stale,            // presence or typing created more than 30 s from this node's clock, either way
  // A group change a member of the origin asked for that the group's home (this region)
  // does not make: the role does not allow it, the member is gone, a limit.
  group_request_refused,
  // A message from a user of another region that would start one more conversation with a
  // user of this one than messages.max_remote_contacts_per_hour allows (the sender gets
  // UNDELIVERABLE): a region has any number of names to write from.
  too_many_contacts,
  count_
};
// The stable name ("malformed"...); "unknown" for count_.
char const* to_string(reject_reason r);

// Bodies in one bundle, at most: the publisher never sends more, and open() refuses more
// (a peer's bundle of tens of thousands of bodies would be taken by the applier at once).
inline constexpr std::size_t max_bundle_bodies = 256;

// Signs serialized `body`s as `origin`, as one bundle: the serialized envelope. Durable
// bodies travel with their lane's epoch, base and floor (none for ephemeral ones). Does not
// check the bodies and does not fail.
std::string seal(std::vector<std::string> bodies, std::string const& origin, secret_key const& key,
                 std::uint64_t lane_epoch = 0, std::uint64_t lane_base = 0,
                 std::optional<std::uint64_t> lane_floor = std::nullopt);

// Parses and verifies an envelope that arrived on a subject whose origin token is
// `subject_origin`. Checks the signature, signer, destination and field presence of each
// body; the message service checks what needs its store (users, messages, lanes). When the
// envelope itself fails (malformed, unknown_region, bad_signature, origin_mismatch)
// `bodies` is empty and `refused` holds that one reason. Does not throw. Any thread (the
// link calls it on NATS.c's threads).
struct opened {
  struct item {
    body content;
    // Genuine (signed by the origin) but not acceptable: malformed, foreign_user or
    // wrong_destination. A durable body still takes its lane position.
    std::optional<reject_reason> refused;
  };
  std::vector<item> bodies;      // every body of the origin's that parsed, in order
  std::uint64_t lane_epoch = 0;  // the bundle's
  std::uint64_t lane_base = 0;
  std::optional<std::uint64_t> lane_floor;  // absent from origins that predate it
  // The whole envelope's refusal, or bodies with no lane effect: unparsable (malformed),
  // for another region (wrong_destination), of another origin (origin_mismatch).
  std::vector<reject_reason> refused;
};
opened open(std::string_view bytes, std::string_view subject_origin, directory const& dir);

// What the link needs from the node's store (implemented by the message service). Calls
// come from the link's manager and applier threads and from link::snapshot()'s caller, so
// they overlap: the implementation must be thread-safe. They may block (store reads,
// durable writes); none is made on a NATS.c thread. A failure is an exception: on the
// manager thread it is logged and the work tried again on a later round; snapshot()
// passes it to its caller; for apply see there.
class local_store {
 public:
  virtual ~local_store() = default;

  struct outgoing {
    std::uint64_t lane_seq;
    std::string body;  // serialized `body`, unsigned
  };
  // The lane seq up to which `destination` confirmed applying the outbox, as last recorded
  // by outbox_confirmed() (or, in a store that never recorded it, the seq just before the
  // oldest entry held). Consistent with concurrent commits. Manager thread (when it first
  // handles a destination) and snapshot()'s caller.
  virtual std::uint64_t outbox_start(std::string const& destination) = 0;
  // The lane seq just before the oldest entry still held for `destination` (confirmed
  // entries are kept for federation.keep_confirmed_s, to send again to a destination
  // restored from a backup). Manager thread, when it first handles a destination.
  virtual std::uint64_t outbox_floor(std::string const& destination) = 0;
  // The lane seq of the newest entry ever queued for `destination`. Manager thread, on a
  // confirmation of the current epoch.
  virtual std::uint64_t outbox_end(std::string const& destination) = 0;
  // Entries with lane seq > `after`, oldest first, at most `limit`. Manager thread, each
  // publish round.
  virtual std::vector<outgoing> outbox_peek(std::string const& destination, std::uint64_t after, std::size_t limit) = 0;
  // The destination confirmed it applied everything up to `lane_seq` (or, restored from a
  // backup, went back to it): record it for outbox_start. May be made durable lazily
  // (entries sent again after a crash are dropped as replays), and should not wait for
  // the write. Manager thread, when a confirmation moves.
  virtual void outbox_confirmed(std::string const& destination, std::uint64_t lane_seq) = 0;
  // Forgets the held entries after `floor` up to `up_to` (confirmed ones) that were created
  // before `before_ms` (every one of them when it is INT64_MAX, without reading them), in
  // order, stopping at the first younger one; returns the new floor. Lazy like
  // outbox_confirmed. Manager thread.
  virtual std::uint64_t outbox_forget(std::string const& destination, std::uint64_t floor, std::uint64_t up_to,
                                      std::int64_t before_ms) = 0;
  struct backlog {
    std::uint64_t entries = 0;
    std::int64_t oldest_created_at_ms = 0;
  };
  // Entries after `after` and the creation time of the first. snapshot()'s caller only;
  // two seeks (the entries after a lane's confirmed seq have no gaps).
  virtual backlog outbox_backlog(std::string const& destination, std::uint64_t after) = 0;
  // Every destination a lane was ever started to (listed now or not). snapshot()'s caller.
  virtual std::vector<std::string> outbox_destinations() = 0;
  // Gives up what is held for `destination`, which the directory does not list: a new epoch
  // of its lane, then every entry erased and the lane's seqs with the last (durable writes
  // of at most a few thousand entries each, blocking), so that listed again, its lane starts
  // over at seq 1 above every epoch it saw. Each write checks that the directory still does
  // not list it: listed again meanwhile, what is queued from then on stays (`listed`).
  // Manager thread (link::drop_outbox).
  struct dropped {
    enum class outcome { done, no_lane, listed, failed } what = outcome::done;
    std::uint64_t entries = 0;  // erased
    std::string error;          // failed: why
  };
  virtual dropped outbox_drop(std::string const& destination) = 0;
  // The epoch of this node's lane to `destination`, created (durably, blocking) on first
  // use. Manager thread, first publish round to it.
  virtual std::uint64_t outbound_epoch(std::string const& destination) = 0;
  // A new epoch of the lane to `destination` larger than both `above` and the lane's
  // current one; durable on return (blocks for the write). For when the destination shows
  // this store is behind it (restored, clock behind). With `destination` empty: a new epoch
  // of every lane (a store restored from a backup, at start). Lanes to other destinations
  // keep theirs: one destination (broken, or hostile) cannot make the others see a new
  // epoch, which starts their lanes again at the last confirmation. Manager thread.
  virtual std::uint64_t new_outbound_epoch(std::string const& destination, std::uint64_t above) = 0;

  struct lane {
    std::uint64_t epoch = 0;
    std::uint64_t seq = 0;
  };
  // Per origin region: the last applied (epoch, seq) of its lane to this region. Manager
  // thread, about every second while connected (the confirmations).
  virtual std::map<std::string, lane> inbound_lanes() = 0;
  // Stream position of the last inbound envelope from `origin` applied or refused (in a
  // store written before positions were kept per origin: the one position it kept for
  // every origin). Manager thread (at each subscription to the stream) and snapshot()'s caller.
  virtual std::uint64_t inbound_position(std::string const& origin) = 0;
  struct inbound {
    std::uint64_t stream_seq = 0;
    std::uint64_t lane_epoch = 0;  // of the bundle it came in
    std::uint64_t lane_base = 0;
    std::optional<std::uint64_t> lane_floor;
    std::optional<body> content;           // signature verified; empty when the envelope was refused
    std::optional<reject_reason> refused;  // the body is genuine but must not be applied
    std::string origin;                    // the region whose subject it came on
  };
  // Applies envelopes in order and stores, per origin, the position of its last one, in
  // one durable write. A refused but genuine body still takes its lane position (it is
  // never sent again). Returns the refusals, including those that needed the store. The
  // batch holds whole envelopes (up to 512 bodies, or one larger envelope), each origin's
  // in stream order, origins taking turns; never empty. Applier thread only; blocks for the write, and whatever the
  // store does after it (the mailbox listener, the outbox wake-up) runs there too. If it throws, the same batch is
  // tried again every second until it succeeds or the link stops (then it is read again at the next start); meanwhile
  // inbound envelopes wait (an origin's callback blocks once 64 of its envelopes do). It
  // throws unappliable when the write failed though the store takes writes (an envelope's
  // content met a record here that cannot be read): the link then applies the batch one
  // envelope at a time, and one that still fails alone after ten seconds of tries is refused (malformed), taking its
  // lane position, so that it cannot stop every region's envelopes behind it.
  virtual std::vector<reject_reason> apply(std::vector<inbound> batch) = 0;
};

// See local_store::apply.
class unappliable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct region_status {
  std::string region;
  bool listed = true;                      // false: out of the directory, with entries still held for it (drop_outbox)
  std::uint64_t outbox = 0;                // not yet confirmed applied by that region (to go, or on the way)
  std::int64_t oldest_undelivered_ms = 0;  // age of the oldest, 0 if none
  // From that region, still in this region's stream: applied ones are purged every 2 s,
  // so this is what waits to be applied (seconds stale).
  std::uint64_t inbound = 0;
};

struct status {
  bool enabled = false;
  bool connected = false;
  std::string server;      // URL of the NATS server connected to (empty when not connected)
  std::string last_error;  // the latest problem; cleared when the stream is set up again
  std::string stream;      // this region's inbound stream: <subject_prefix>-in-<region>
  std::uint64_t stream_last_seq = 0;
  std::uint64_t applied_position = 0;  // the newest stream seq applied (of any origin)
  std::uint64_t inbound_backlog = 0;   // in the stream: not yet applied, or applied since the last purge (2 s)
  std::uint64_t published = 0;         // outbox entries (bodies, resends included) JetStream stored since start
  std::uint64_t applied = 0;           // inbound bodies applied since start
  std::vector<region_status> regions;
  std::map<std::string, std::uint64_t> rejects;  // by reason
};

// The NATS link. Runs its own threads (see the top of this file): a manager thread for
// connection management and publishing, an applier thread for inbound batches; NATS.c's
// threads verify, queue and run the ephemeral handler. wake, send_ephemeral, snapshot and
// the counters may be called from any thread; after stop() they do nothing and answer
// false, 0 or an empty status if the link had to let its state go (see stop).
class link {
 public:
  // Gets verified presence and typing bodies (signed by their origin, for this region, at
  // most 30 s off this clock), one at a time on NATS.c's live-subscription thread, also
  // while stop() drains it. That thread also takes other regions' lane confirmations: a
  // slow handler delays them, and this region then resends to them. A std::exception it
  // throws is logged and costs that body only.
  using ephemeral_handler = std::function<void(body const&)>;
  // Returns this region's online users who have contacts in `region`, for the periodic
  // refresh: called on the manager thread, once per other region every
  // presence_interval_s while connected, and blocks publishing meanwhile. A std::exception
  // is logged and skips that region until the next refresh. Sent in chunks of 500, marked
  // `full` only when one chunk holds them all.
  using presence_source = std::function<presence_update(std::string const& region)>;
  // Answers another region's asset request (`asker` is that region, verified): the piece,
  // or found = false. Called on NATS.c's thread of the asset subscription, one at a time;
  // it may read the disk. A std::exception it throws leaves the request unanswered.
  using asset_server = std::function<asset_piece(std::string const& asker, asset_request const& request)>;

  // Starts nothing and does not fail. `dir`, `store` and what the callbacks use must
  // outlive the link (or its stop()); `log` must not be null.
  link(options o, directory const& dir, secret_key key, local_store& store, ephemeral_handler on_ephemeral,
       presence_source presence_snapshot, std::shared_ptr<spdlog::logger> log);
  ~link();  // stop()
  link(link const&) = delete;
  link& operator=(link const&) = delete;

  // Starts the applier and manager threads and returns; call once. The manager connects
  // (retrying in the background while the server is unreachable) and sets up the stream.
  // Failures show in status and the log, never here; if the NATS options are unusable (a
  // credentials, nkey or TLS file that does not load), connecting fails otherwise, or no
  // JetStream context can be made, the manager thread ends: nothing is published or
  // consumed until restart.
  void start();
  // Joins the manager thread (after its current NATS call or publish round), drains both
  // subscriptions (if connected; up to 2 s each), lets the applier apply what is queued,
  // then stops it, closes the connection and waits up to 1 s for NATS.c's last callback;
  // if that does not come, the state is let go (leaked) so a late callback cannot touch
  // freed memory. Blocking: call from the main thread once the I/O threads are done,
  // before the local_store and what the callbacks use stop. Idempotent; the destructor
  // calls it.
  void stop();

  // New outbox entries are committed: publish soon. Never blocks (a short mutex). Called
  // by the message service after such a commit: on an I/O thread, or on the applier thread.
  void wake();
  // Best-effort presence, typing or lane_ack for `destination` (origin, destination and
  // created_at_ms are set here): dropped silently while not connected or for a region the
  // directory does not list, never queued and never answered. Does not wait for a reply
  // or a reconnect, but it publishes on the calling thread: it takes NATS.c's connection
  // lock, and once NATS.c's write buffer is full it writes to the socket there (no write
  // deadline is set), so it can wait behind the manager's publishing. Called from I/O
  // threads (remote_hooks) and the manager.
  void send_ephemeral(std::string const& destination, body b);

  // Before start(): serves this region's assets to other regions (docs/FEDERATION.md,
  // "Assets across regions").
  void serve_assets(asset_server server);
  // Before start(): told of every durable body applied here (not refused), with its origin
  // and the origin's created_at_ms (the node's metrics: send -> applied per region). Runs
  // on the applier thread; must not block.
  using applied_fn = std::function<void(std::string const& origin, std::int64_t created_at_ms)>;
  void observe_applied(applied_fn fn);
  // Asks `region` for a piece of an asset and waits up to `timeout_ms` for the verified
  // answer: nullopt while disconnected, on timeout, or if the answer does not verify. Any
  // thread but NATS.c's; blocks.
  std::optional<asset_piece> fetch_asset(std::string const& region, asset_request const& request, int timeout_ms);

  // Everything `petchatctl federation status` shows. Blocking (scans the outbox through
  // the store, which may throw; takes NATS.c's connection lock): the admin API calls it
  // on the CPU pool.
  status snapshot();
  // `petchatctl federation drop-outbox`: gives up everything held for `region`, which the
  // directory must no longer list (a decommissioned region): done by the manager thread
  // between rounds (local_store::outbox_drop), which then forgets the lane's state in
  // memory, so that listed again it starts from what the store says. Never blocks: the
  // answer comes through the future (at once, `failed`, when the manager thread is not
  // running; those queued when it ends are answered `failed` too). Any thread.
  std::future<local_store::dropped> drop_outbox(std::string const& region);
  // Whether the link is connected to NATS (a flag NATS.c's callbacks keep). Any thread.
  bool connected() const;
  // Cheap counters for metrics (atomic reads, any thread): outbox entries JetStream stored
  // (resends included), inbound bodies applied, refusals of any reason.
  std::uint64_t published() const;
  std::uint64_t applied() const;
  std::uint64_t rejected() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace petchat::federation
