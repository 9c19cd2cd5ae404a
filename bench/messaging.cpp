#include "bench/messaging.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "bench/lean_stream.hpp"
#include "bench/process.hpp"

namespace petchat::bench {
namespace {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A sender and its recipient. The sender's connection and all but the recipient's part live
// on the pair's strand; the recipient is a lean stream (bench/lean_stream.hpp) whose
// handlers run on any thread, so what the two share is under `sent_mutex`.
struct pair_state {
  explicit pair_state(asio::any_io_executor ex) : credit(ex), schedule(ex) {}
  std::unique_ptr<sdk::connection> sender;
  std::shared_ptr<lean_stream> recipient;
  std::string recipient_id;
  std::mutex sent_mutex;
  std::unordered_map<std::string, clock_type::time_point> by_client_id;   // until delivered to recipient (sent_mutex)
  std::unordered_map<std::string, clock_type::time_point> by_pending_id;  // until accepted
  std::unordered_map<std::string, clock_type::time_point> by_message_id;  // until the receipt
  int in_flight = 0;
  int window = 1;
  std::uint64_t counter = 0;
  asio::steady_timer credit;    // closed loop: the sender sleeps on it while the window is full
  asio::steady_timer schedule;  // open loop: the sender sleeps on it until the next send is due
  bool done = false;
};

asio::awaitable<void> sender_loop(std::shared_ptr<pair_state> p, std::shared_ptr<shared_state> s, int index) {
  // Open loop: pair k of P starts k/P of an interval late, so sends are spread evenly.
  auto next = s->start + s->interval * index / std::max(1, s->pairs);
  while (!s->stop) {
    if (s->open_loop) {
      next += s->interval;
      p->schedule.expires_at(next);
      co_await p->schedule.async_wait(use_tuple);
      if (s->stop) break;
    } else {
      while (p->in_flight >= p->window && !s->stop) {
        p->credit.expires_at(clock_type::time_point::max());
        co_await p->credit.async_wait(use_tuple);
      }
      if (s->stop) break;
    }
    client::client_frame f;
    std::string id = "b" + std::to_string(p->counter++);
    f.mutable_send()->set_client_id(id);
    f.mutable_send()->set_to(p->recipient_id);
    f.mutable_send()->mutable_body()->set_text(s->payload);
    // Open loop: latency counts from the scheduled time, so a stall shows up in full.
    auto t = s->open_loop ? next : clock_type::now();
    {
      std::lock_guard lock(p->sent_mutex);
      p->by_client_id[id] = t;
    }
    p->by_pending_id[id] = t;
    p->in_flight++;
    co_await p->sender->write(f);
  }
}

asio::awaitable<void> sender_reader(std::shared_ptr<pair_state> p, std::shared_ptr<shared_state> s) {
  for (;;) {
    auto f = co_await p->sender->read();
    if (f.has_accepted()) {
      auto it = p->by_pending_id.find(f.accepted().client_id());
      if (it == p->by_pending_id.end()) continue;
      s->to_accepted.add(std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - it->second).count());
      s->accepted++;
      if (s->measure_receipts)
        p->by_message_id[f.accepted().message_id()] = it->second;
      else {
        p->in_flight--;
        s->completed++;
        p->credit.cancel();
      }
      p->by_pending_id.erase(it);
    } else if (f.has_event() && f.event().has_receipt() && f.event().receipt().status() == client::DELIVERED) {
      auto it = p->by_message_id.find(f.event().receipt().message_id());
      if (it == p->by_message_id.end()) continue;
      s->to_receipt.add(std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - it->second).count());
      p->by_message_id.erase(it);
      p->in_flight--;
      s->completed++;
      p->credit.cancel();
    } else if (f.has_error()) {
      throw std::runtime_error("node refused a send: " + f.error().code() + ": " + f.error().message());
    }
  }
}

// The recipient: every message read is timed against its send, and what one read brought
// is acknowledged at once by one cumulative ack (the node then makes every message's
// DELIVERED receipt), as a client that batches its acks does.
void start_recipient(std::shared_ptr<pair_state> p, std::shared_ptr<shared_state> s) {
  lean_stream::handlers h;
  h.frame = [p, s](client::server_frame const& f) {
    if (!f.has_event() || !f.event().has_message()) return;
    std::lock_guard lock(p->sent_mutex);
    auto it = p->by_client_id.find(f.event().message().client_id());
    if (it == p->by_client_id.end()) return;
    s->to_recipient.add(std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - it->second).count());
    p->by_client_id.erase(it);
  };
  h.read_done = [s](lean_stream& stream) {
    if (stream.ack_read()) s->acks++;
  };
  h.ended = [s](std::string const& why) {
    if (!why.empty() && !s->stop) std::fprintf(stderr, "petchat-bench: a recipient's stream ended: %s\n", why.c_str());
  };
  p->recipient->start(std::move(h));
}

}  // namespace

asio::awaitable<void> message_run(options o, sdk::endpoint ep, sdk::endpoint recipient_ep,
                                  std::shared_ptr<shared_state> s, std::vector<pid_t> nodes, message_result* out,
                                  bool open_loop) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<std::shared_ptr<pair_state>> pairs;
  static std::atomic<int> run_counter{0};
  int run_id = run_counter++;
  for (int i = 0; i < o.pairs; ++i) {
    auto strand = asio::make_strand(ex);
    auto p = std::make_shared<pair_state>(strand);
    auto a = co_await sdk::register_and_login(ep, "s" + std::to_string(run_id) + "x" + std::to_string(i), "bench-pass",
                                              "bench");
    auto b = co_await sdk::register_and_login(recipient_ep, "r" + std::to_string(run_id) + "x" + std::to_string(i),
                                              "bench-pass", "bench");
    p->recipient_id = b.user_id;
    p->window = open_loop ? 1 : o.window;
    p->sender = co_await asio::co_spawn(strand, sdk::connection::open(ep, a.access_token, std::nullopt, o.encoding),
                                        asio::use_awaitable);
    p->recipient = co_await lean_stream::open(recipient_ep, b.access_token, o.encoding);
    pairs.push_back(p);
  }
  s->open_loop = open_loop;
  s->pairs = o.pairs;
  s->interval = std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 * o.pairs / std::max(1.0, o.rate)));
  s->payload = std::string(static_cast<std::size_t>(o.payload), 'x');
  s->start = clock_type::now();
  auto cpu_of = [&nodes] {
    std::uint64_t sum = 0;
    for (auto pid : nodes) sum += cpu_micros(pid);
    return sum;
  };
  std::uint64_t cpu0 = cpu_of();
  std::uint64_t tool_cpu0 = own_cpu_micros();
  int index = 0;
  for (auto& p : pairs) {
    auto strand = p->credit.get_executor();
    asio::co_spawn(strand, guarded(sender_reader(p, s)), asio::detached);
    start_recipient(p, s);
    asio::co_spawn(strand, guarded(sender_loop(p, s, index++)), asio::detached);
  }
  asio::steady_timer timer(ex);
  timer.expires_after(std::chrono::microseconds(static_cast<std::int64_t>(o.duration_s * 1e6)));
  co_await timer.async_wait(use_tuple);
  out->completed = s->completed.load();
  out->seconds = std::chrono::duration<double>(clock_type::now() - s->start).count();
  out->cpu_us = cpu_of() - cpu0;
  out->tool_cpu_us = own_cpu_micros() - tool_cpu0;
  out->acks = s->acks.load();
  s->stop = true;
  for (auto& p : pairs)
    asio::post(p->credit.get_executor(), [p] {
      p->credit.cancel();
      p->schedule.cancel();
    });
  timer.expires_after(std::chrono::milliseconds(300));
  co_await timer.async_wait(use_tuple);
  for (auto& p : pairs)
    asio::post(p->credit.get_executor(), [p] {
      p->sender->close();
      p->recipient->close();  // a lean stream: closed from any thread
    });
  timer.expires_after(std::chrono::milliseconds(100));
  co_await timer.async_wait(use_tuple);
  out->accepted = s->to_accepted.summarize();
  out->recipient = s->to_recipient.summarize();
  out->receipt = s->to_receipt.summarize();
}

}  // namespace petchat::bench
