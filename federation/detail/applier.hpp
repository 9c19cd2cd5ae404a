// The inbound queue and the applier thread: verified envelopes from the stream's
// subscription wait here (at most max_queued) and are applied in stream order, whole
// envelopes per store write, so a stored position never splits an envelope.
//
// Threads: push() on NATS.c's subscription thread (it blocks while the queue is full: that
// is the back-pressure on the consumer); run() is the applier thread; the positions from
// any thread; start() and stop() from the link's owner.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "federation/detail/link_state.hpp"

namespace petchat::federation::detail {

class inbound_applier {
 public:
  explicit inbound_applier(link_state& state);

  void start();
  // Ends the thread; a push() waiting for room returns false.
  void stop();

  // One envelope's items (all with the same stream seq). False once stopping.
  bool push(std::vector<local_store::inbound> items);

  // Highest stream seq queued (or applied): the subscription drops what is not above it.
  std::uint64_t last_queued() const { return last_queued_.load(); }
  // The stream seq of the last batch this process applied (0: none since the stream was
  // (re)created); what may be purged from the stream.
  std::uint64_t applied_seq() const { return applied_seq_.load(); }
  // The manager (re)subscribes from `from`; `recreated`: the stream is a new one, so
  // nothing of it was applied yet.
  void restart_at(std::uint64_t from, bool recreated);

 private:
  void run();
  std::vector<local_store::inbound> take_batch();
  void apply(std::vector<local_store::inbound> const& batch);

  link_state& s_;
  std::thread thread_;
  std::atomic<std::uint64_t> last_queued_{0};
  std::atomic<std::uint64_t> applied_seq_{0};

  std::mutex mutex_;
  std::condition_variable filled_, drained_;
  std::deque<std::vector<local_store::inbound>> queue_;  // one entry per envelope, guarded by mutex_
  bool stop_ = false;                                    // guarded by mutex_
};

}  // namespace petchat::federation::detail
