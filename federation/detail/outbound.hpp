// The outbound side of the lanes: per destination region, how far the outbox was published
// and how far the destination confirmed applying it; when to send again; the lane epoch.
// Transport (NATS) is the publisher's (detail/publisher.cpp): this decides *what* goes out next.
//
// Threads: note_ack() and confirmed() from any thread; everything else from the link's
// manager thread only.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "federation/federation.hpp"

namespace petchat::federation::detail {

class outbound_lanes {
 public:
  // How far ahead of this clock a confirmation's time is believed (the skew federation
  // allows elsewhere); a later one counts as made then.
  static constexpr std::int64_t max_ack_skew_ms = 5 * 60 * 1000;

  outbound_lanes(options const& opt, directory const& dir, local_store& store, std::shared_ptr<spdlog::logger> log);

  // A confirmation from `destination` (a verified lane_ack, made at `created_ms` by its
  // clock); applied at take_confirmations.
  void note_ack(std::string const& destination, lane_ack const& ack, std::int64_t created_ms);
  // Applies the confirmations noted since the last call: moves the confirmed seqs (back
  // too, for a destination restored from a backup, while the entries are still held), or
  // moves to a new epoch when a destination is ahead of this store; then forgets confirmed
  // entries older than keep_confirmed_s.
  void take_confirmations();

  struct batch {
    std::vector<local_store::outgoing> entries;  // empty: nothing to send now
    std::uint64_t epoch = 0;                     // for the bundle
    std::uint64_t base = 0;                      // confirmed seq, for the bundle
    std::uint64_t floor = 0;                     // seq up to which nothing is held any more
  };
  // The next entries to publish to `destination`: new ones, or again from the last
  // confirmed seq when they stayed unconfirmed too long.
  batch next(std::string const& destination, std::size_t limit);
  // JetStream stored everything up to `lane_seq`.
  void published(std::string const& destination, std::uint64_t lane_seq);

  // Confirmed lane seq per destination (for status).
  std::map<std::string, std::uint64_t> confirmed() const;
  // Forgets the lane's state (its outbox was dropped): read from the store again when next used.
  void forget_lane(std::string const& destination);

 private:
  using clock = std::chrono::steady_clock;
  struct lane {
    bool started = false;
    std::uint64_t published = 0;                 // lane seq JetStream stored up to
    std::uint64_t confirmed = 0;                 // lane seq the destination applied up to
    std::uint64_t floor = 0;                     // lane seq up to which entries are forgotten (<= confirmed)
    clock::time_point forgot_at{};               // the last pass over entries to forget
    std::uint64_t lost_reported = 0;             // a going back below `floor` already logged (its seq + 1)
    clock::time_point waiting_since{};           // when `confirmed` last moved (or waiting began)
    clock::duration resend_delay{};              // grows while resending brings no progress
    std::uint64_t hold_after = 0;                // after a resend: publish no further until confirmations move
    std::uint64_t epoch = 0;                     // the lane's epoch
    std::int64_t ack_made_ms = 0;                // when the newest confirmation taken was made (its clock)
    std::optional<clock::time_point> turned_at;  // the last going back or new epoch a confirmation caused
    std::uint64_t resent_through = 0;            // the confirmed seq before the last going back
  };
  lane& lane_to(std::string const& destination);
  void confirm(std::string const& destination, lane& l, std::uint64_t seq);
  void went_back(std::string const& destination, lane& l, std::uint64_t seq);
  void forget_old(std::string const& destination, lane& l);
  void show_confirmed(std::string const& destination, std::uint64_t seq);

  options const& opt_;
  directory const& dir_;
  local_store& store_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, lane> lanes_;  // manager thread only

  std::mutex acks_mutex_;
  struct noted_ack {
    lane_ack ack;
    std::int64_t created_ms = 0;
  };
  std::map<std::string, noted_ack> acks_;  // by destination, guarded by acks_mutex_
  mutable std::mutex view_mutex_;
  std::map<std::string, std::uint64_t> confirmed_view_;  // guarded by view_mutex_
};

}  // namespace petchat::federation::detail
