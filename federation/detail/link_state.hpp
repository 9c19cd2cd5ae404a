// What the parts of the link share: its inputs (options, directory, key, store, log), the
// NATS names, the flags and counters every thread reads, the status figures and the last
// error, refused-envelope counting, and the manager thread's wake-up.
//
// Threads: every member may be used from any thread (atomics, or guarded by this class's
// own mutexes, which are leaves: see federation/LOCKING.md).
#pragma once

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "federation/federation.hpp"

namespace petchat::federation::detail {

using clock = std::chrono::steady_clock;

// Subjects and the stream: <prefix>.v1.fed.<destination>.<origin> is captured by the
// destination's stream <prefix>-in-<destination>; <prefix>.v1.live.<destination>.<origin>
// is plain NATS (presence, typing, confirmations).
struct nats_names {
  nats_names(std::string const& prefix, std::string const& self);
  std::string stream;          // <prefix>-in-<self>
  std::string inbound_filter;  // <prefix>.v1.fed.<self>.*
  std::string asset_filter;    // <prefix>.v1.asset.<self>.*
  std::string fed_to(std::string const& destination) const;
  std::string live_to(std::string const& destination) const;
  std::string asset_to(std::string const& destination) const;
  std::string fed_from(std::string const& origin) const;   // <prefix>.v1.fed.<self>.<origin>
  std::string live_from(std::string const& origin) const;  // <prefix>.v1.live.<self>.<origin>

 private:
  std::string prefix_, self_;
};

// A region's NATS inboxes (its requests' replies) are under inbox_root + <region>.
inline constexpr std::string_view inbox_root = "_INBOX.";

// The last token of a subject: the origin region.
std::string last_token(std::string_view subject);

class link_state {
 public:
  link_state(options o, directory const& dir, secret_key key, local_store& store, std::shared_ptr<spdlog::logger> log);

  options const opt;
  directory const& dir;
  secret_key const key;
  local_store& store;
  std::shared_ptr<spdlog::logger> const log;
  nats_names const names;

  std::atomic<bool> stopping{false};
  std::atomic<bool> connected{false};       // NATS.c says the connection is up
  std::atomic<bool> need_setup{true};       // (re)create the stream and subscriptions
  std::atomic<bool> closed{false};          // NATS.c closed the connection for good (no more reconnects): open it anew
  std::atomic<std::uint64_t> published{0};  // outbox entries JetStream stored
  std::atomic<std::uint64_t> applied{0};    // inbound bodies applied (verified, not refused)
  std::function<void(std::string const&, std::int64_t)> on_applied;  // set before start

  // Logs `what` and keeps it as the status's last error.
  void set_error(std::string what);
  // NATS is unreachable: the last error says since when (the time of the first loss, kept
  // until a setup succeeds) and why.
  void set_unreachable(bool just_lost, std::string const& why);
  // The stream and subscriptions are in place: no error to show.
  void clear_error();

  // A refused envelope: counted always, logged at most once per 10 s per reason.
  void count(reject_reason r, std::string_view detail);
  std::uint64_t rejected_total() const;
  std::map<std::string, std::uint64_t> rejected_by_reason() const;

  // The stream's figures from the manager's last stream info.
  void set_stream_figures(std::uint64_t last_seq, std::map<std::string, std::uint64_t> by_origin);
  struct figures {
    status cached;                                   // stream_last_seq, last_error
    std::map<std::string, std::uint64_t> by_origin;  // envelopes in the stream per origin
  };
  figures stream_figures() const;

  // The manager's pause between rounds: returns after `most`, or earlier on wake() or stop
  // (true if woken). Each wake-up is counted (the store wakes the link once per request
  // that queued outbox entries): gather() waits until `enough` came since begin_round(), or
  // `most` passed, or stop; what was queued meanwhile then goes out in the same bundles.
  void wake();
  bool pause(clock::duration most);
  void begin_round();
  void gather(clock::duration most, std::uint64_t enough);

 private:
  mutable std::mutex status_mutex_;
  status cached_;                                           // guarded by status_mutex_
  std::string unreachable_since_;                           // guarded by status_mutex_
  std::map<std::string, std::uint64_t> inbound_by_origin_;  // guarded by status_mutex_

  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(reject_reason::count_)> rejects_{};
  std::mutex log_mutex_;
  std::map<reject_reason, clock::time_point> last_logged_;  // guarded by log_mutex_

  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  bool woken_ = false;          // guarded by wake_mutex_
  std::uint64_t wakes_ = 0;     // guarded by wake_mutex_
  std::uint64_t at_round_ = 0;  // wakes_ when the last round began; guarded by wake_mutex_
};

}  // namespace petchat::federation::detail
