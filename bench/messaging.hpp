// The messaging workloads' run (throughput, latency, federation, and the startup
// workload's fill): P sender/recipient pairs on live streams, each message through the
// full sequence. bench/messaging.cpp; main.cpp chooses the nodes and reports.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/stats.hpp"
#include "bench/workload.hpp"
#include "client/client.hpp"

namespace petchat::bench {

// What the pairs of one run share with it (and the echo ceiling's run, which counts and
// stops the same way).
struct shared_state {
  samples to_accepted, to_recipient, to_receipt;
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> acks{0};  // sent by the recipients
  std::atomic<bool> stop{false};
  bool open_loop = false;
  bool measure_receipts = true;
  int pairs = 1;
  std::chrono::nanoseconds interval{0};  // open loop: time between a pair's sends
  std::chrono::steady_clock::time_point start;
  std::string payload;
};

// Senders connect to `ep`, recipients to `recipient_ep` (another region for the federation
// workload); closed loop with o.window in flight per pair, or open loop at o.rate when
// `open_loop`. Server CPU is the sum over `nodes`. Runs for o.duration_s (or until s->stop).
boost::asio::awaitable<void> message_run(options o, sdk::endpoint ep, sdk::endpoint recipient_ep,
                                         std::shared_ptr<shared_state> s, std::vector<pid_t> nodes, message_result* out,
                                         bool open_loop);

}  // namespace petchat::bench
