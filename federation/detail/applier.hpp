// The inbound queues and the applier thread: verified envelopes from each origin's
// subscription wait in that origin's queue (at most max_queued each) and are applied with
// the origins taking turns, whole envelopes per store write, so a stored position never
// splits an envelope, and each origin's in its stream order. One origin with a long
// backlog (a region back from a partition, or a hostile one) therefore delays another's
// envelopes by about one store write, not by its backlog.
//
// Threads: push() on NATS.c's subscription thread of that origin (it blocks while the
// origin's queue is full: that is the back-pressure on its consumer, and on no other);
// run() is the applier thread; the positions from any thread; start() and stop() from the
// link's owner; add() and restart_at() from the manager.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "federation/detail/link_state.hpp"

namespace petchat::federation::detail {

class inbound_applier {
 public:
  // One origin's queue. Its address is stable from add() until the applier is destroyed.
  struct origin_queue {
    explicit origin_queue(std::string o) : origin(std::move(o)) {}
    std::string const origin;
    // Highest stream seq queued (or applied): the subscription drops what is not above it.
    std::atomic<std::uint64_t> last_queued{0};
    // The stream seq of this origin's last envelope this process applied (0: none since the
    // stream was (re)created); what may be purged from the stream.
    std::atomic<std::uint64_t> applied_seq{0};
    std::deque<std::vector<local_store::inbound>> queue;  // one entry per envelope, guarded by the applier's mutex_
    std::uint64_t stream_instance = 0;  // counts the stream's re-creations; guarded by the applier's mutex_
  };

  explicit inbound_applier(link_state& state);

  void start();
  // Ends the thread; a push() waiting for room returns false.
  void stop();

  // The queue of `origin`, made on first use.
  origin_queue& add(std::string const& origin);
  // One envelope's items (all with the same stream seq), read from the stream `instance`
  // (as instance() said when its callback began). False once stopping.
  bool push(origin_queue& q, std::vector<local_store::inbound> items, std::uint64_t instance);
  std::uint64_t instance(origin_queue& q);
  // The manager (re)subscribes the origin from `from`, the store saying everything of it
  // up to `applied` was applied (purged at the next purge, if still there); `recreated`:
  // the stream is a new one, so nothing of it was applied yet, and what waits from the old
  // one is dropped (never confirmed, so its origin sends it again).
  void restart_at(origin_queue& q, std::uint64_t from, std::uint64_t applied, bool recreated);

 private:
  struct taken {
    std::vector<local_store::inbound> batch;
    struct last_of {
      origin_queue* q;
      std::uint64_t seq;       // the origin's last stream seq in the batch
      std::uint64_t instance;  // of the stream it was read from
    };
    std::vector<last_of> last;
  };
  void run();
  taken take_batch();
  void apply(taken const& t);
  std::vector<reject_reason> store_batch(std::vector<local_store::inbound> const& batch);

  link_state& s_;
  std::thread thread_;

  std::mutex mutex_;
  std::condition_variable filled_, drained_;
  std::map<std::string, std::unique_ptr<origin_queue>> origins_;  // guarded by mutex_
  std::size_t queued_ = 0;                                        // envelopes in every queue; guarded by mutex_
  std::string next_;   // the origin whose turn comes first at the next take; guarded by mutex_
  bool stop_ = false;  // guarded by mutex_
};

}  // namespace petchat::federation::detail
