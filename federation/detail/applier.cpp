#include "federation/detail/applier.hpp"

#include <pthread.h>

#include <algorithm>
#include <optional>
#include <thread>

namespace petchat::federation::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t max_queued = 64;    // envelopes (bundles) of one origin waiting to be applied
constexpr std::size_t apply_batch = 512;  // bodies per apply, whole envelopes only

}  // namespace

inbound_applier::inbound_applier(link_state& state) : s_(state) {}

void inbound_applier::start() {
  thread_ = std::thread([this] { run(); });
}

void inbound_applier::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  filled_.notify_all();
  drained_.notify_all();
  if (thread_.joinable()) thread_.join();
}

inbound_applier::origin_queue& inbound_applier::add(std::string const& origin) {
  std::lock_guard lock(mutex_);
  auto& q = origins_[origin];
  if (!q) q = std::make_unique<origin_queue>(origin);
  return *q;
}

std::uint64_t inbound_applier::instance(origin_queue& q) {
  std::lock_guard lock(mutex_);
  return q.stream_instance;
}

bool inbound_applier::push(origin_queue& q, std::vector<local_store::inbound> items, std::uint64_t instance) {
  auto seq = items.front().stream_seq;
  std::unique_lock lock(mutex_);
  drained_.wait(lock, [&] { return q.queue.size() < max_queued || stop_; });
  if (stop_) return false;
  // A callback of a consumer replaced while it waited here (a dead one consumed again, a
  // reconnect): the new one may have queued these already; or of a stream since recreated,
  // whose seqs mean nothing in the new one.
  if (seq <= q.last_queued || instance != q.stream_instance) return true;
  q.queue.push_back(std::move(items));
  ++queued_;
  q.last_queued = seq;
  lock.unlock();
  filled_.notify_one();
  return true;
}

void inbound_applier::restart_at(origin_queue& q, std::uint64_t from, std::uint64_t applied, bool recreated) {
  std::lock_guard lock(mutex_);
  q.last_queued = from;
  if (!recreated) {
    q.applied_seq = std::max(q.applied_seq.load(), applied);
    return;
  }
  // Positions of the old stream must not reach the new one's purge.
  q.applied_seq = 0;
  ++q.stream_instance;
  queued_ -= q.queue.size();
  q.queue.clear();
}

// Duplicates never reach the queues (each subscription drops stream seqs already queued),
// so everything is applied in its origin's queue order.
void inbound_applier::run() {
  pthread_setname_np(pthread_self(), "fed-applier");  // seen in top -H, perf, gdb
  for (;;) {
    auto t = take_batch();
    if (t.batch.empty()) return;
    apply(t);
  }
}

// Whole envelopes up to apply_batch bodies (at least one envelope), the origins taking
// turns one envelope at a time from where the last take stopped; empty when stopping.
inbound_applier::taken inbound_applier::take_batch() {
  taken t;
  {
    std::unique_lock lock(mutex_);
    filled_.wait(lock, [this] { return queued_ > 0 || stop_; });
    std::vector<origin_queue*> turns;
    for (auto it = origins_.lower_bound(next_); it != origins_.end(); ++it) turns.push_back(it->second.get());
    for (auto it = origins_.begin(); it != origins_.end() && it->first < next_; ++it) turns.push_back(it->second.get());
    for (bool took = true, full = false; took && !full;) {
      took = false;
      for (auto* q : turns) {
        if (q->queue.empty()) continue;
        auto& envelope = q->queue.front();
        if (full = !t.batch.empty() && t.batch.size() + envelope.size() > apply_batch; full) break;
        auto seq = envelope.front().stream_seq;
        for (auto& item : envelope) t.batch.push_back(std::move(item));
        q->queue.pop_front();
        --queued_;
        took = true;
        auto last = std::find_if(t.last.begin(), t.last.end(), [q](auto const& l) { return l.q == q; });
        if (last == t.last.end())
          t.last.push_back({q, seq, q->stream_instance});
        else
          last->seq = seq;
        auto after = origins_.upper_bound(q->origin);
        next_ = after == origins_.end() ? std::string() : after->first;
      }
    }
  }
  drained_.notify_all();
  return t;
}

// The batch as the store takes it: whole, or when one of its envelopes cannot be applied
// (unappliable), one envelope at a time, and one that cannot alone for ten seconds is
// refused as malformed.
std::vector<reject_reason> inbound_applier::store_batch(std::vector<local_store::inbound> const& batch) {
  try {
    return s_.store.apply(batch);
  } catch (unappliable const&) {
    std::vector<reject_reason> refused;
    for (auto const& item : batch) {
      // Alone, and again for ten seconds: a cause that passes (a read that failed once, a
      // store that failed and resumed between the write and the look at its error) must not
      // cost a genuine envelope. A store that fails throws on (rocks_error): all is retried.
      std::optional<std::vector<reject_reason>> r;
      for (int attempt = 0; !r && attempt < 10; ++attempt) {
        try {
          r = s_.store.apply({item});
        } catch (unappliable const&) {
          std::this_thread::sleep_for(1s);
          std::lock_guard lock(mutex_);
          if (stop_) throw;
        }
      }
      if (r) {
        refused.insert(refused.end(), r->begin(), r->end());
      } else {
        s_.log->error(
            "federation: an envelope from {} (lane seq {}) could not be applied here; refused as "
            "malformed, the lane goes on",
            item.origin, item.content ? item.content->lane_seq() : 0);
        auto passed = item;
        passed.refused = reject_reason::malformed;
        auto taken = s_.store.apply({passed});
        refused.insert(refused.end(), taken.begin(), taken.end());
      }
    }
    return refused;
  }
}

// Retries a failing store (a full disk) every second until it takes the batch or the link stops.
void inbound_applier::apply(taken const& t) {
  auto const& batch = t.batch;
  for (;;) {
    try {
      std::size_t verified = 0;
      for (auto const& i : batch) verified += i.content ? 1 : 0;
      auto refused = store_batch(batch);
      for (auto r : refused) s_.count(r, "");
      s_.applied += verified - std::min(verified, refused.size());
      {
        std::lock_guard lock(mutex_);
        for (auto const& l : t.last)
          if (l.instance == l.q->stream_instance) l.q->applied_seq = l.seq;
      }
      // Refusals are not told apart per body here: a batch with any is left out of the
      // latency figures (refusals are rare, and a refused body was not delivered).
      if (s_.on_applied && refused.empty())
        for (auto const& i : batch)
          if (i.content && !i.refused && i.content->lane_seq() != 0)
            s_.on_applied(i.content->origin(), i.content->created_at_ms());
      return;
    } catch (std::exception const& e) {
      s_.set_error(std::string("cannot apply inbound envelopes: ") + e.what());
      std::this_thread::sleep_for(1s);
      std::lock_guard lock(mutex_);
      if (stop_) return;
    }
  }
}

}  // namespace petchat::federation::detail
