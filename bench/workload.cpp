#include "bench/workload.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <thread>

namespace petchat::bench {

namespace asio = boost::asio;
namespace json = boost::json;

void run(options const& o, asio::awaitable<void> work) {
  asio::io_context io(o.threads);
  std::exception_ptr failure;
  asio::co_spawn(io, std::move(work), [&](std::exception_ptr e) {
    failure = e;
    io.stop();
  });
  std::vector<std::thread> pool;
  for (int i = 1; i < o.threads; ++i) pool.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<void> guarded(asio::awaitable<void> inner) {
  try {
    co_await std::move(inner);
  } catch (boost::system::system_error const&) {
  } catch (std::exception const& e) {
    std::fprintf(stderr, "petchat-bench: %s\n", e.what());
    std::_Exit(1);
  }
}

node_under_test start_node(options const& o, std::filesystem::path dir) {
  node_under_test n;
  n.dir = dir.empty() ? temp_dir("node") : dir;
  auto config = n.dir / "bench.toml";
  std::ofstream(config)
      << "[node]\nregion = \"bench\"\nthreads = " << o.threads
      << "\n[gateway]\nmax_connections = 1000000\nmax_connections_per_address = 1000000\n"
      << "[users]\npassword_hash_ops = 1\npassword_hash_memory_kib = "
         "8\nmax_registrations_per_address = 10000000\nmax_devices_per_user = 100000\n"
      << "login_free_attempts = 1000\nlogin_free_attempts_per_address = 100000\n"
      << "login_checks_per_minute_per_address = 0\n"
      << "[messages]\nmax_per_second = 100000\nmax_streams_per_user = 1000000\nmax_joins_per_hour = 0\n"
      << "send_queue_frames = 65536\n"
      << "[store]\nsync = " << (o.durable ? "true" : "false") << "\n[log]\nlevel = \"warn\"\n";
  n.argv = {o.node_binary, "--config",    config.string(),    "--data-dir", (n.dir / "data").string(),
            "--listen",    "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"};
  n.process = spawn(n.argv, "petchat-node ready:");
  return n;
}

void remove_node(node_under_test& n) {
  stop(n.process);
  std::error_code ec;
  std::filesystem::remove_all(n.dir, ec);
}

json::object summary_json(samples::summary const& s) {
  return json::object{{"count", s.count}, {"p50_ms", s.p50}, {"p99_ms", s.p99}, {"p999_ms", s.p999}, {"max_ms", s.max}};
}

void print_latency(char const* what, samples::summary const& s) {
  std::printf("  %-28s p50 %8.3f ms  p99 %8.3f ms  p99.9 %8.3f ms  max %8.3f ms  (n=%zu)\n", what, s.p50, s.p99, s.p999,
              s.max, s.count);
}

int report_messages(options const& o, char const* workload, message_result const& r,
                    std::optional<message_result> echo) {
  double rate = r.seconds > 0 ? static_cast<double>(r.completed) / r.seconds : 0;
  double cpu_per = r.completed ? static_cast<double>(r.cpu_us) / static_cast<double>(r.completed) : 0;
  // Load generator and node share the machine: a tool that spends as much CPU per message
  // as the node, or more, saturates first, and the run then measures the tool.
  double tool_cpu = r.completed ? static_cast<double>(r.tool_cpu_us) / static_cast<double>(r.completed) : 0;
  bool tool_limited = r.completed > 0 && tool_cpu >= cpu_per;
  // The echo workload's frames are raw bytes, in neither encoding.
  bool is_echo = std::string(workload) == "echo";
  char const* encoding = o.encoding == sdk::encoding::json ? "json" : "proto";
  double echo_rate = echo && echo->seconds > 0 ? static_cast<double>(echo->completed) / echo->seconds : 0;
  // The echo server's CPU per round trip (one frame in, one out): the transport's own cost,
  // which every frame of the full sequence pays too.
  double echo_cpu =
      echo && echo->completed ? static_cast<double>(echo->cpu_us) / static_cast<double>(echo->completed) : 0;
  if (o.as_json) {
    json::object j{
        {"workload", workload},
        {"pairs", o.pairs},
        {"window", o.window},
        {"durable", o.durable},
        {"seconds", r.seconds},
        {"completed", r.completed},
        {"messages_per_s", rate},
        {"server_cpu_us_per_message", cpu_per},
        {"tool_cpu_us_per_message", tool_cpu},
        {"acks_per_message", r.completed ? static_cast<double>(r.acks) / static_cast<double>(r.completed) : 0},
        {"send_to_accepted", summary_json(r.accepted)},
        {"send_to_recipient", summary_json(r.recipient)},
        {"send_to_receipt", summary_json(r.receipt)}};
    if (std::string(workload).ends_with("latency")) j["rate"] = o.rate;
    if (!is_echo) j["encoding"] = encoding;
    if (echo) {
      j["echo_round_trips_per_s"] = echo_rate;
      j["ratio_to_echo"] = echo_rate > 0 ? rate / echo_rate : 0;
      j["echo_server_cpu_us_per_round_trip"] = echo_cpu;
    }
    std::cout << json::serialize(j) << "\n";
    return 0;
  }
  std::printf("%s: %d pairs, %s, %s frames, durability %s, %.1f s\n", workload, o.pairs,
              std::string(workload).ends_with("latency")
                  ? ("open loop at " + std::to_string(static_cast<int>(o.rate)) + "/s").c_str()
                  : ("window " + std::to_string(o.window)).c_str(),
              is_echo ? "raw" : encoding, o.durable ? "on" : "off", r.seconds);
  std::printf("  completed                    %llu messages, %.0f messages/s\n",
              static_cast<unsigned long long>(r.completed), rate);
  std::printf("  server CPU                   %.1f us per message\n", cpu_per);
  std::printf("  tool CPU                     %.1f us per message\n", tool_cpu);
  if (tool_limited) std::printf("  the tool, not the node, is the limit of this run (tool CPU >= server CPU)\n");
  if (!is_echo)
    std::printf("  recipients' acks             %.3f per message\n",
                r.completed ? static_cast<double>(r.acks) / static_cast<double>(r.completed) : 0);
  if (!is_echo) {
    print_latency("send -> accepted", r.accepted);
    print_latency("send -> at recipient", r.recipient);
    print_latency("send -> delivered receipt", r.receipt);
  }
  if (echo && !is_echo) {
    std::printf("  bare Beast echo ceiling      %.0f round trips/s; petchat = %.3f of it\n", echo_rate,
                echo_rate > 0 ? rate / echo_rate : 0);
    std::printf("  bare Beast echo server CPU   %.1f us per round trip (one frame each way)\n", echo_cpu);
  }
  return 0;
}

}  // namespace petchat::bench
