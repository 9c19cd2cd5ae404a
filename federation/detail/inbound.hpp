// The region's side of NATS: its inbound stream (created or updated after every
// reconnect); per region the directory lists, an ordered consumer of that origin's subject
// that reads it into the origin's queue of the applier, and a subscription to its live
// subject (presence, typing, confirmations); the stream's figures, and purging what was
// applied. One subscription per origin: a flood from one region fills its own queues and
// NATS.c's pending limits of its own subscriptions, never another region's.
//
// Threads: setup(), refresh_info(), purge_applied(), drain() and destroy() on the manager
// thread (drain() and destroy() after its loop ended); the callbacks on NATS.c's threads
// (one per subscription).
#pragma once

#include <nats/nats.h>

#include <optional>

#include "federation/detail/applier.hpp"
#include "federation/detail/connection.hpp"
#include "federation/detail/link_state.hpp"
#include "federation/detail/outbound.hpp"

namespace petchat::federation::detail {

class inbound_stream {
 public:
  inbound_stream(link_state& state, nats_connection& conn, inbound_applier& applier, outbound_lanes& lanes,
                 link::ephemeral_handler on_ephemeral);

  // Creates or updates the stream and subscribes where a subscription is missing or dead;
  // clears the last error when all is in place. False (with the error set) otherwise.
  bool setup();
  // The stream's end and its envelopes per origin, for status; subscribes to regions the
  // directory lists since; purges what regions it does not list left in the stream.
  void refresh_info();
  // Drops what this process applied from the stream: of every origin (`all`), or of those
  // whose applied position moved a quarter of a share (in stream seqs, which count every
  // origin's: more often than needed, never less) since their last purge (called every
  // round: an origin's share counts what is applied until it is purged).
  void purge_applied(bool all);

  // At stop, while the applier still runs (so a callback blocked on a full queue ends):
  // lets in-flight messages finish, if connected. NATS.c 3.4 misbehaves when a
  // subscription is destroyed with messages in flight.
  void drain();
  void destroy();

 private:
  // One origin's subscriptions. Its address is stable (the callbacks' closure) until destroy().
  struct origin_subs {
    inbound_stream* owner;
    inbound_applier::origin_queue& queue;
    natsSubscription* fed = nullptr;   // manager thread only
    natsSubscription* live = nullptr;  // manager thread only
    std::uint64_t purged_upto = 0;     // manager thread only
  };
  bool ensure_stream(std::uint64_t& last_seq, std::optional<std::int64_t> largest_held);
  std::int64_t origin_share() const;
  bool largest_held(std::optional<std::int64_t>& held);
  bool subscribe_listed(std::uint64_t last_seq, bool setting_up);
  bool subscribe_inbound(origin_subs& o, std::uint64_t last_seq);
  static void drop(natsSubscription*& sub);
  bool purge(std::string const& subject, std::uint64_t before);
  static void on_inbound(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* closure);
  static void on_live(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* closure);
  void handle_live(body const& b);

  link_state& s_;
  nats_connection& conn_;
  inbound_applier& applier_;
  outbound_lanes& lanes_;
  link::ephemeral_handler on_ephemeral_;
  std::map<std::string, std::unique_ptr<origin_subs>> origins_;  // manager thread only; never erased before destroy()
  // The stream's messages per subject as last set (0: not yet; -1: the server keeps no shares).
  std::int64_t share_ = 0;  // manager thread only
};

}  // namespace petchat::federation::detail
