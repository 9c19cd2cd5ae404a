#include "federation/detail/applier.hpp"

#include <pthread.h>

namespace petchat::federation::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t max_queued = 64;    // envelopes (bundles) waiting to be applied
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

bool inbound_applier::push(std::vector<local_store::inbound> items) {
  auto seq = items.front().stream_seq;
  std::unique_lock lock(mutex_);
  drained_.wait(lock, [this] { return queue_.size() < max_queued || stop_; });
  if (stop_) return false;
  queue_.push_back(std::move(items));
  last_queued_ = seq;
  lock.unlock();
  filled_.notify_one();
  return true;
}

void inbound_applier::restart_at(std::uint64_t from, bool recreated) {
  last_queued_ = from;
  if (recreated) applied_seq_ = 0;
}

// Duplicates never reach the queue (the subscription drops stream seqs already queued), so
// everything is applied in queue order.
void inbound_applier::run() {
  pthread_setname_np(pthread_self(), "fed-applier");  // seen in top -H, perf, gdb
  for (;;) {
    auto batch = take_batch();
    if (batch.empty()) return;
    apply(batch);
  }
}

// Whole envelopes up to apply_batch bodies (at least one envelope); empty when stopping.
std::vector<local_store::inbound> inbound_applier::take_batch() {
  std::vector<local_store::inbound> batch;
  {
    std::unique_lock lock(mutex_);
    filled_.wait(lock, [this] { return !queue_.empty() || stop_; });
    while (!queue_.empty() && (batch.empty() || batch.size() + queue_.front().size() <= apply_batch)) {
      for (auto& item : queue_.front()) batch.push_back(std::move(item));
      queue_.pop_front();
    }
  }
  drained_.notify_all();
  return batch;
}

// Retries a failing store (a full disk) every second until it takes the batch or the link stops.
void inbound_applier::apply(std::vector<local_store::inbound> const& batch) {
  for (;;) {
    try {
      std::size_t verified = 0;
      for (auto const& i : batch) verified += i.content ? 1 : 0;
      auto refused = s_.store.apply(batch);
      for (auto r : refused) s_.count(r, "");
      s_.applied += verified - std::min(verified, refused.size());
      applied_seq_ = batch.back().stream_seq;
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
