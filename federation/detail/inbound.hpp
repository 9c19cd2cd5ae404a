// The region's side of NATS: its inbound stream (created or updated after every
// reconnect), the ordered consumer that reads it into the applier, the live subject's
// subscription (presence, typing, confirmations), the stream's figures, and purging what
// was applied.
//
// Threads: setup(), refresh_info(), purge_applied(), drain() and destroy() on the manager
// thread (drain() and destroy() after its loop ended); the callbacks on NATS.c's threads.
#pragma once

#include <nats/nats.h>

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
  // The stream's end and its envelopes per origin, for status.
  void refresh_info();
  // Drops what this process applied from the stream.
  void purge_applied();

  // At stop, while the applier still runs (so a callback blocked on a full queue ends):
  // lets in-flight messages finish, if connected. NATS.c 3.4 misbehaves when a
  // subscription is destroyed with messages in flight.
  void drain();
  void destroy();

 private:
  bool ensure_stream(std::uint64_t& last_seq);
  bool subscribe_inbound(std::uint64_t last_seq);
  void drop_inbound_subscription();
  static void on_inbound(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* self);
  static void on_live(natsConnection* nc, natsSubscription* sub, natsMsg* msg, void* self);
  void handle_live(body const& b);

  link_state& s_;
  nats_connection& conn_;
  inbound_applier& applier_;
  outbound_lanes& lanes_;
  link::ephemeral_handler on_ephemeral_;
  natsSubscription* inbound_sub_ = nullptr;  // manager thread only
  natsSubscription* live_sub_ = nullptr;     // manager thread only
  std::uint64_t purged_upto_ = 0;            // manager thread only
};

}  // namespace petchat::federation::detail
