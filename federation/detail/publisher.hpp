// What this region sends: each destination's outbox in signed bundles through JetStream
// (with a back-off per destination that JetStream does not take), and on the live
// subjects the confirmations of what was applied, presence snapshots and other ephemeral
// envelopes.
//
// Threads: the manager thread, except send_ephemeral(), which any thread may call: it
// seals and queues, and the publisher's own live thread publishes (a NATS write can wait,
// up to the write deadline, behind the manager's; the node's I/O threads must not).
#pragma once

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
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
  // Seals and queues for the destination's live subject; dropped while disconnected. When
  // 4,096 or 16 MiB wait the oldest go (presence is sent again every presence_interval_s,
  // confirmations every second; a typing notice is worth nothing late).
  void send_ephemeral(std::string const& destination, body b);
  // The live thread: started with the link, stopped before the connection closes. False
  // if it did not end by `deadline` (inside a NATS write): it is then left running.
  void start_live();
  bool stop_live(std::chrono::steady_clock::time_point deadline);

 private:
  // One destination's batch: how much of it JetStream stored, and whether it refused one.
  struct outcome {
    std::size_t stored;  // entries JetStream stored, from the first
    bool refused;        // a bundle was refused or could not be sent
  };
  outcome publish_to(std::string const& destination, outbound_lanes::batch& next, bool one_by_one);

  link_state& s_;
  nats_connection& conn_;
  outbound_lanes& lanes_;
  link::presence_source presence_;
  std::map<std::string, std::pair<clock::time_point, clock::duration>> backoff_;  // until, delay
  std::map<std::string, bool> careful_;  // a region that took part of a round: a bundle at a time

  void run_live();
  std::thread live_thread_;
  std::promise<void> live_ended_;
  std::mutex live_mutex_;  // guards live_queue_ and live_stopping_ (with live_cv_)
  std::condition_variable live_cv_;
  std::deque<std::pair<std::string, std::string>> live_queue_;  // subject, sealed envelope
  std::size_t live_bytes_ = 0;                                  // of the envelopes in live_queue_
  bool live_stopping_ = false;
};

}  // namespace petchat::federation::detail
