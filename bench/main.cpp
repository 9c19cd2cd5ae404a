// petchat-bench: load generator and measurements for petchat (docs/BENCHMARKS.md).
//
// Workloads: throughput (closed loop, full sequence), latency (open loop at a fixed
// rate, measured from each message's scheduled time), connections (many idle
// authenticated connections), startup (time to ready with M stored messages, after a
// clean stop and after kill -9), echo (the bare Beast WebSocket ceiling), federation (the
// full sequence from a user of one region to a user of another, through nats-server),
// groups (one sender to a group: deliveries to every member; bench/groups.cpp); assets
// (uploads, downloads, thumbnails; bench/assets.cpp).
//
// By default the tool starts its own petchat-node (and petchat-echo) on free loopback
// ports, so it can read their CPU time and memory from /proc.
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "bench/messaging.hpp"
#include "bench/process.hpp"
#include "bench/regions.hpp"
#include "bench/stats.hpp"
#include "bench/workload.hpp"
#include "client/client.hpp"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace petchat;
using bench::guarded;
using bench::message_result;
using bench::message_run;
using bench::node_under_test;
using bench::options;
using bench::remove_node;
using bench::run;
using bench::shared_state;
using bench::start_node;
using clock_type = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------- echo ceiling

asio::awaitable<void> echo_pipeline(std::shared_ptr<sdk::connection> c, int window, std::string payload,
                                    std::shared_ptr<shared_state> s) {
  for (int i = 0; i < window; ++i) co_await c->write_raw(payload);
  while (!s->stop) {
    co_await c->read_raw();
    s->completed++;
    co_await c->write_raw(payload);
  }
}

asio::awaitable<void> echo_run(options o, sdk::endpoint ep, pid_t pid, message_result* out) {
  auto ex = co_await asio::this_coro::executor;
  auto s = std::make_shared<shared_state>();
  // Each connection is used only on its own strand (a Beast stream is not thread-safe):
  // its pipeline runs there and it is closed there.
  std::vector<std::pair<asio::strand<asio::any_io_executor>, std::shared_ptr<sdk::connection>>> conns;
  for (int i = 0; i < o.pairs; ++i) {
    auto strand = asio::make_strand(ex);
    conns.emplace_back(strand,
                       co_await asio::co_spawn(strand, sdk::connection::open_raw(ep, "/"), asio::use_awaitable));
  }
  std::string payload(static_cast<std::size_t>(o.payload + 40), 'x');  // about a send frame's size
  auto start = clock_type::now();
  std::uint64_t cpu0 = bench::cpu_micros(pid);
  std::uint64_t tool_cpu0 = bench::own_cpu_micros();
  for (auto& [strand, c] : conns)
    asio::co_spawn(strand, guarded(echo_pipeline(c, o.window, payload, s)), asio::detached);
  asio::steady_timer timer(ex);
  timer.expires_after(std::chrono::microseconds(static_cast<std::int64_t>(o.duration_s * 1e6)));
  co_await timer.async_wait(use_tuple);
  out->completed = s->completed.load();
  out->seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  out->cpu_us = bench::cpu_micros(pid) - cpu0;
  out->tool_cpu_us = bench::own_cpu_micros() - tool_cpu0;
  s->stop = true;
  for (auto& [strand, c] : conns) asio::post(strand, [c = c] { c->close(); });
  timer.expires_after(std::chrono::milliseconds(100));
  co_await timer.async_wait(use_tuple);
}

message_result measure_echo(options const& o) {
  auto echo = bench::spawn({o.echo_binary, std::to_string(o.threads)}, "petchat-echo ready:");
  message_result r;
  run(o, echo_run(o, {"127.0.0.1", echo.port}, echo.pid, &r));
  bench::stop(echo);
  return r;
}

// ---------------------------------------------------------------- connections

asio::awaitable<void> hold(std::shared_ptr<sdk::connection> c) {
  for (;;) (void)co_await c->read();
}

asio::awaitable<void> connections_run(options o, sdk::endpoint ep, pid_t node, json::object* out) {
  auto ex = co_await asio::this_coro::executor;
  auto t = co_await sdk::register_and_login(ep, "idle", "bench-pass", "bench");
  asio::steady_timer timer(ex);
  timer.expires_after(std::chrono::milliseconds(500));
  co_await timer.async_wait(use_tuple);
  std::uint64_t rss0 = bench::resident_bytes(node);
  auto start = clock_type::now();
  std::vector<std::shared_ptr<sdk::connection>> conns;
  conns.reserve(static_cast<std::size_t>(o.connections));
  for (int i = 0; i < o.connections; ++i) {
    // 10,000 connections per source address keeps clear of the ephemeral-port limit.
    std::string source = "127.0." + std::to_string(1 + i / 10000) + ".1";
    auto strand = asio::make_strand(ex);
    auto c = co_await asio::co_spawn(strand, sdk::connection::open(ep, t.access_token, source, o.encoding),
                                     asio::use_awaitable);
    auto shared = std::shared_ptr<sdk::connection>(std::move(c));
    asio::co_spawn(strand, guarded(hold(shared)), asio::detached);
    conns.push_back(shared);
  }
  double connect_s = std::chrono::duration<double>(clock_type::now() - start).count();
  // Heartbeats: every connection pings once while held.
  for (auto& c : conns) {
    client::client_frame ping;
    ping.mutable_ping();
    co_await c->write(ping);
  }
  timer.expires_after(std::chrono::microseconds(static_cast<std::int64_t>(o.duration_s * 1e6)));
  co_await timer.async_wait(use_tuple);
  std::uint64_t rss1 = bench::resident_bytes(node);
  double per = o.connections ? (static_cast<double>(rss1) - static_cast<double>(rss0)) / o.connections : 0;
  *out =
      json::object{{"workload", "connections"},     {"connections", o.connections}, {"connect_all_s", connect_s},
                   {"node_rss_before_bytes", rss0}, {"node_rss_after_bytes", rss1}, {"node_bytes_per_connection", per}};
  for (auto& c : conns) c->close();
  timer.expires_after(std::chrono::milliseconds(200));
  co_await timer.async_wait(use_tuple);
}

// ---------------------------------------------------------------- startup

double seconds_to_ready(node_under_test& n) {
  auto t0 = clock_type::now();
  n.process = bench::spawn(n.argv, "petchat-node ready:");
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int startup(options o) {
  auto n = start_node(o);
  options fill = o;
  fill.duration_s = 3600;
  fill.window = 64;
  // Fill with `messages` sends (accepted, not waiting for receipts), then stop.
  {
    auto s = std::make_shared<shared_state>();
    s->measure_receipts = false;
    message_result r;
    auto target = static_cast<std::uint64_t>(o.messages);
    asio::io_context io(o.threads);
    std::exception_ptr failure;
    asio::co_spawn(io, message_run(fill, n.endpoint(), n.endpoint(), s, {n.process.pid}, &r, false),
                   [&](std::exception_ptr e) {
                     failure = e;
                     io.stop();
                   });
    std::thread watcher([&] {
      while (s->accepted < target && !io.stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      io.stop();
    });
    std::vector<std::thread> pool;
    for (int i = 1; i < o.threads; ++i) pool.emplace_back([&io] { io.run(); });
    io.run();
    for (auto& t : pool) t.join();
    watcher.join();
    if (failure) std::rethrow_exception(failure);
  }
  // kill -9 right after the fill (recent writes still only in the WAL), then a clean stop.
  bench::stop(n.process, true);
  double crashed = seconds_to_ready(n);
  bench::stop(n.process);
  double clean = seconds_to_ready(n);
  remove_node(n);
  if (o.as_json) {
    std::cout << json::serialize(json::object{{"workload", "startup"},
                                              {"stored_messages", o.messages},
                                              {"ready_after_clean_stop_s", clean},
                                              {"ready_after_kill9_s", crashed}})
              << "\n";
  } else {
    std::printf("startup with %d stored messages: ready %.3f s after a clean stop, %.3f s after kill -9\n", o.messages,
                clean, crashed);
  }
  return 0;
}

// The workloads against one node: connections, or throughput / latency (then the echo
// ceiling for comparison).
int single_node(options const& o, bool connections, bool open_loop) {
  auto n = start_node(o);
  if (connections) {
    json::object result;
    run(o, connections_run(o, n.endpoint(), n.process.pid, &result));
    remove_node(n);
    if (o.as_json)
      std::cout << json::serialize(result) << "\n";
    else
      std::printf("connections: %d held, connected in %.2f s, node memory %.0f bytes per connection above baseline\n",
                  o.connections, result.at("connect_all_s").as_double(),
                  result.at("node_bytes_per_connection").as_double());
    return 0;
  }
  message_result r;
  run(o, message_run(o, n.endpoint(), n.endpoint(), std::make_shared<shared_state>(), {n.process.pid}, &r, open_loop));
  remove_node(n);
  std::optional<message_result> e;
  if (!open_loop) e = measure_echo(o);
  return bench::report_messages(o, open_loop ? "latency" : "throughput", r, e);
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  options o;
  CLI::App app{"petchat-bench: measure a petchat node (see docs/BENCHMARKS.md)"};
  app.require_subcommand(1);
  bench::add_global_options(app, o);
  auto* throughput = app.add_subcommand("throughput", "closed loop, full sequence per message");
  auto* latency = app.add_subcommand("latency", "open loop at a fixed total rate");
  auto* connections = app.add_subcommand("connections", "idle authenticated connections and memory");
  auto* startup_cmd = app.add_subcommand("startup", "time to ready with stored messages");
  auto* echo = app.add_subcommand("echo", "the bare Beast WebSocket echo ceiling alone");
  auto* federation = app.add_subcommand(
      "federation", "two regions and a nats-server: full sequence across regions (closed loop, or open with --rate)");
  auto* groups = app.add_subcommand("groups", "one sender to a group of members, all acknowledging what they get");
  auto* assets = app.add_subcommand("assets", "upload and download throughput against the disk, memory, thumbnails");
  std::uint64_t asset_mib = 1024;
  int asset_concurrent = 1000, asset_images = 5;
  assets->add_option("--size-mib", asset_mib, "the large upload, MiB")->capture_default_str();
  assets->add_option("--concurrent", asset_concurrent, "1 MiB uploads at once")->capture_default_str();
  assets->add_option("--images", asset_images, "12-megapixel JPEGs to thumbnail")->capture_default_str();
  std::string nats_binary = "/usr/sbin/nats-server";  // where Debian puts it
  federation->add_option("--nats-server", nats_binary, "nats-server binary")->capture_default_str();
  federation->add_option("--rate", o.rate, "open loop at this total rate (default: closed loop)");
  int batch_delay_ms = -1;
  federation->add_option("--batch-delay-ms", batch_delay_ms,
                         "federation.batch_delay_ms of both nodes (default: the node's own default)");
  // A list (8,100,1000) runs the workload once per value, each on a fresh node: how cost
  // grows with connections.
  std::vector<int> pairs_list{o.pairs};
  for (auto* sub : {throughput, latency, echo, federation})
    sub->add_option("--pairs", pairs_list, "sender/recipient pairs (echo: connections); a list runs each in turn")
        ->delimiter(',')
        ->capture_default_str();
  // At most 1000: the node's default messages.max_group_members, which the tool keeps.
  std::vector<int> members_list{o.members};
  groups->add_option("--members", members_list, "group size, the sender included (2 to 1000); a list runs each in turn")
      ->delimiter(',')
      ->check(CLI::Range(2, 1000))
      ->capture_default_str();
  for (auto* sub : {throughput, latency, echo, federation, groups}) {
    sub->add_option("--duration", o.duration_s, "seconds")->capture_default_str();
    sub->add_option("--payload", o.payload, "text bytes per message")->capture_default_str();
  }
  for (auto* sub : {throughput, echo, federation})
    sub->add_option("--window", o.window, "in flight per pair")->capture_default_str();
  groups->add_option("--window", o.window, "sends in flight")->capture_default_str();
  groups->add_flag("--read", o.group_reads, "the members also mark the newest message of each read as read");
  latency->add_option("--rate", o.rate, "messages per second, all pairs together")->capture_default_str();
  connections->add_option("--connections", o.connections, "how many")->capture_default_str();
  connections->add_option("--duration", o.duration_s, "seconds to hold them")->capture_default_str();
  startup_cmd->add_option("--messages", o.messages, "stored messages")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (startup_cmd->parsed()) return startup(o);
    if (assets->parsed()) return bench::assets_workload(o, asset_mib, asset_concurrent, asset_images);
    if (connections->parsed()) return single_node(o, true, false);
    int rc = 0;
    if (groups->parsed()) {
      for (int members : members_list) {
        o.members = members;
        rc |= bench::group_workload(o);
      }
      return rc;
    }
    for (int pairs : pairs_list) {
      o.pairs = pairs;
      if (echo->parsed()) {
        auto r = measure_echo(o);
        rc |= bench::report_messages(o, "echo", r, r);
      } else if (federation->parsed()) {
        bench::two_regions regions;
        bench::start_two_regions({o.node_binary, nats_binary, o.threads, o.durable, batch_delay_ms}, regions);
        bool open_loop = federation->count("--rate") > 0;
        message_result r;
        run(o, message_run(o, {"127.0.0.1", regions.a.port}, {"127.0.0.1", regions.b.port},
                           std::make_shared<shared_state>(), {regions.a.pid, regions.b.pid, regions.nats.pid}, &r,
                           open_loop));
        rc |= bench::report_messages(o, open_loop ? "federation-latency" : "federation", r, std::nullopt);
      } else {
        rc |= single_node(o, false, latency->parsed());
      }
    }
    return rc;
  } catch (std::exception const& ex) {
    std::fprintf(stderr, "petchat-bench: %s\n", ex.what());
    return 1;
  }
}
