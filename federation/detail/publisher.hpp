// What this region sends: each destination's outbox in signed bundles through JetStream
// (with a back-off per destination that JetStream does not take), and on the live
// subjects the confirmations of what was applied, presence snapshots and other ephemeral
// envelopes.
//
// Threads: the manager thread, except send_ephemeral(), which any thread may call.
#pragma once

#include <map>
#include <string>
#include <utility>

#include "federation/detail/connection.hpp"
#include "federation/detail/link_state.hpp"
#include "federation/detail/outbound.hpp"

namespace petchat::federation::detail {

class publisher {
 public:
  publisher(link_state& state, nats_connection& conn, outbound_lanes& lanes, link::presence_source presence);

  // Publishes the next batch of every destination's outbox; true if anything went out.
  bool publish_round();
  // Tells every origin how far this region applied its lane.
  void send_confirmations();
  // The presence of this region's users, to every region (in chunks).
  void refresh_presence();
  // Seals and publishes on the destination's live subject; dropped while disconnected.
  void send_ephemeral(std::string const& destination, body b);

 private:
  // One destination's batch; false if JetStream did not store all of it.
  bool publish_to(std::string const& destination, outbound_lanes::batch& next);

  link_state& s_;
  nats_connection& conn_;
  outbound_lanes& lanes_;
  link::presence_source presence_;
  std::map<std::string, std::pair<clock::time_point, clock::duration>> backoff_;  // until, delay
};

}  // namespace petchat::federation::detail
