// Federation between regions over NATS JetStream: the region directory, signed envelopes,
// and the link that carries them. docs/FEDERATION.md is the design; in short:
//
//  - Durable kinds (messages, receipts, deletions) are written by the message service into
//    a durable outbox in the same RocksDB batch as the local change, so an `accepted`
//    never waits on NATS and a crash never loses an accepted message. The link publishes
//    the outbox in order to the destination region's inbound stream and deletes what
//    JetStream acknowledged.
//  - Each region owns one inbound stream. The link reads it with an ordered push consumer
//    from the stream position the message service stored with the last applied batch, so
//    stream position and effects commit together (exactly-once effect).
//  - Ephemeral kinds (presence, typing) go on plain NATS subjects and are never stored.
//
// This folder knows nothing of WebSockets or of RocksDB: the node hands the link a
// `local_store` (the message service) and callbacks.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
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

// Region name -> entry, including this region itself.
class directory {
 public:
  directory() = default;
  directory(std::string self, public_key self_key, options const& o);

  std::string const& self() const { return self_; }
  region_entry const* find(std::string_view region) const;
  bool is_remote(std::string_view region) const { return region != self_ && find(region) != nullptr; }
  std::vector<region_entry> const& all() const { return regions_; }  // self first

 private:
  std::string self_;
  std::vector<region_entry> regions_;
};

// Why an envelope was refused. Stable names: they appear in metrics, logs and status.
enum class reject_reason {
  malformed,          // not an envelope, or a body that does not parse or lacks fields
  unknown_region,     // the signer is not in the directory
  bad_signature,      // signature does not verify against the signer's keys
  origin_mismatch,    // signer, body origin and subject disagree on the origin region
  wrong_destination,  // addressed to another region
  foreign_user,       // speaks for a user of another region than the signer
  unknown_user,       // names a user of this region that does not exist
  too_large,          // a message over this region's size limits (or not UTF-8)
  unknown_message,    // a receipt or deletion for a message this region does not have
  replayed,           // a lane position already applied (duplicate or replay)
  out_of_order,       // a lane position ahead of the next expected one (resent later)
  stale,              // an ephemeral envelope too old to act on
  count_
};
char const* to_string(reject_reason r);

// Signs serialized `body`s as `origin`, as one bundle: the serialized envelope. Durable
// bodies travel with their lane's epoch and base (0 for ephemeral ones).
std::string seal(std::vector<std::string> bodies, std::string const& origin, secret_key const& key,
                 std::uint64_t lane_epoch = 0, std::uint64_t lane_base = 0);

// Parses and verifies an envelope that arrived on a subject whose origin token is
// `subject_origin`. Checks the signature, signer, destination and field presence of each
// body; the message service checks what needs its store (users, messages, lanes). When the
// envelope itself fails (not an envelope, unknown signer, bad signature, origins that
// disagree) `bodies` is empty and `refused` holds that one reason.
struct opened {
  struct item {
    body content;
    std::optional<reject_reason> refused;  // genuine (signed by the origin) but not acceptable
  };
  std::vector<item> bodies;      // every body of the origin's that parsed, in order
  std::uint64_t lane_epoch = 0;  // the bundle's
  std::uint64_t lane_base = 0;
  std::vector<reject_reason> refused;  // the whole envelope's refusal, or bodies with no lane effect
};
opened open(std::string_view bytes, std::string_view subject_origin, directory const& dir);

// What the link needs from the node's store (implemented by the message service). Every
// call blocks and is made from the link's own threads, never from an I/O thread.
class local_store {
 public:
  virtual ~local_store() = default;

  struct outgoing {
    std::uint64_t lane_seq;
    std::string body;  // serialized `body`, unsigned
  };
  // The lane seq just before the oldest entry still in the outbox for `destination`
  // (everything up to it was confirmed applied there). Consistent with concurrent commits.
  virtual std::uint64_t outbox_start(std::string const& destination) = 0;
  // The lane seq of the newest entry ever queued for `destination`.
  virtual std::uint64_t outbox_end(std::string const& destination) = 0;
  // Entries with lane seq > `after`, oldest first.
  virtual std::vector<outgoing> outbox_peek(std::string const& destination, std::uint64_t after, std::size_t limit) = 0;
  // The destination confirmed it applied everything up to `lane_seq`: forget it. May be
  // made durable lazily (entries sent again after a crash are dropped as replays).
  virtual void outbox_trim(std::string const& destination, std::uint64_t lane_seq) = 0;
  struct backlog {
    std::uint64_t entries = 0;
    std::int64_t oldest_created_at_ms = 0;
  };
  virtual backlog outbox_backlog(std::string const& destination, std::uint64_t after) = 0;
  // The epoch of this node's outbound lanes, created (durably) on first use.
  virtual std::uint64_t outbound_epoch() = 0;
  // Replaces it with a new epoch larger than both `above` and the current one; durable on
  // return. For when a destination shows this store is behind it (restored, clock behind).
  virtual std::uint64_t new_outbound_epoch(std::uint64_t above) = 0;

  struct lane {
    std::uint64_t epoch = 0;
    std::uint64_t seq = 0;
  };
  // Per origin region: the last applied (epoch, seq) of its lane to this region.
  virtual std::map<std::string, lane> inbound_lanes() = 0;
  // Stream position of the last inbound envelope applied or refused.
  virtual std::uint64_t inbound_position() = 0;
  struct inbound {
    std::uint64_t stream_seq = 0;
    std::uint64_t lane_epoch = 0;  // of the bundle it came in
    std::uint64_t lane_base = 0;
    std::optional<body> content;           // signature verified; empty when the envelope was refused
    std::optional<reject_reason> refused;  // the body is genuine but must not be applied
  };
  // Applies envelopes in order and stores the position of the last one, in one durable
  // write. A refused but genuine body still takes its lane position (it is never sent
  // again). Returns the refusals, including those that needed the store.
  virtual std::vector<reject_reason> apply(std::vector<inbound> batch) = 0;
};

struct region_status {
  std::string region;
  std::uint64_t outbox = 0;                // not yet confirmed applied by that region (to go, or on the way)
  std::int64_t oldest_undelivered_ms = 0;  // age of the oldest, 0 if none
  // From that region, still in this region's stream: applied ones are purged every 2 s,
  // so this is what waits to be applied (seconds stale).
  std::uint64_t inbound = 0;
};

struct status {
  bool enabled = false;
  bool connected = false;
  std::string server;  // URL of the NATS server connected to
  std::string last_error;
  std::string stream;
  std::uint64_t stream_last_seq = 0;
  std::uint64_t applied_position = 0;
  std::uint64_t inbound_backlog = 0;  // in the stream, not yet applied
  std::uint64_t published = 0;        // envelopes stored by JetStream since start
  std::uint64_t applied = 0;          // inbound envelopes applied since start
  std::vector<region_status> regions;
  std::map<std::string, std::uint64_t> rejects;  // by reason
};

// The NATS link. Runs its own threads: one for connection management and publishing, one
// applying inbound batches; NATS.c's threads only verify and queue.
class link {
 public:
  // `on_ephemeral` gets verified presence and typing bodies, on a NATS thread: it must only
  // post elsewhere. `presence_snapshot` returns this region's online users who have contacts in
  // `region`, for the periodic refresh.
  using ephemeral_handler = std::function<void(body const&)>;
  using presence_source = std::function<presence_update(std::string const& region)>;

  link(options o, directory const& dir, secret_key key, local_store& store, ephemeral_handler on_ephemeral,
       presence_source presence_snapshot, std::shared_ptr<spdlog::logger> log);
  ~link();
  link(link const&) = delete;
  link& operator=(link const&) = delete;

  void start();
  void stop();  // drains the subscription, then stops the threads

  // New outbox entries are committed: publish soon.
  void wake();
  // Best-effort, never blocks on the network: presence or typing for `destination`.
  void send_ephemeral(std::string const& destination, body b);

  // Everything `petchatctl federation status` shows. Blocking (scans the outbox): call
  // off the I/O threads.
  status snapshot();
  bool connected() const;
  // Cheap counters for metrics.
  std::uint64_t published() const;
  std::uint64_t applied() const;
  std::uint64_t rejected() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace petchat::federation
