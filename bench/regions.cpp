#include "bench/regions.hpp"

#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>

namespace petchat::bench {
namespace {

// Runs `command` and returns its first line of output.
std::string first_line(std::string const& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buf[256] = {0};
  if (!std::fgets(buf, sizeof buf, pipe.get())) throw std::runtime_error("no output from " + command);
  std::string line(buf);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

void write_config(std::filesystem::path const& file, std::string const& region, std::string const& peer,
                  std::string const& peer_key, std::uint16_t nats_port, region_settings const& s) {
  std::ofstream(file) << "[node]\nregion = \"" << region << "\"\nthreads = " << s.threads
                      << "\n[gateway]\nmax_connections = 1000000\nmax_connections_per_address = 1000000\n"
                      << "[users]\npassword_hash_ops = 1\npassword_hash_memory_kib = 8\nmax_registrations_per_address "
                         "= 10000000\nmax_devices_per_user = 100000\n"
                      << "login_free_attempts = 1000\nlogin_free_attempts_per_address = 100000\n"
                      << "login_checks_per_minute_per_address = 0\n"
                      << "[messages]\nmax_per_second = 100000\nmax_streams_per_user = 1000000\nmax_joins_per_hour = 0\n"
                      << "send_queue_frames = 65536\n"
                      << "[store]\nsync = " << (s.durable ? "true" : "false") << "\n[log]\nlevel = \"warn\"\n"
                      << "[federation]\nnats_urls = [\"nats://127.0.0.1:" << nats_port << "\"]\n"
                      << "max_stream_bytes = 268435456\n"
                      << (s.batch_delay_ms >= 0 ? "batch_delay_ms = " + std::to_string(s.batch_delay_ms) + "\n" : "")
                      << "\n"
                      << "[[federation.regions]]\nname = \"" << peer << "\"\npublic_keys = [\"" << peer_key << "\"]\n";
}

}  // namespace

two_regions::~two_regions() {
  if (a.pid > 0) stop(a);
  if (b.pid > 0) stop(b);
  if (nats.pid > 0) stop(nats);
  std::error_code ec;
  if (!dir.empty()) std::filesystem::remove_all(dir, ec);
}

void start_two_regions(region_settings const& s, two_regions& r) {
  r.dir = temp_dir("regions");
  // -p -1: a random free port, printed in the "Listening for client connections" line.
  r.nats = spawn(
      {s.nats_binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", (r.dir / "nats").string(), "-l", "/dev/stdout"},
      "Listening for client connections on");
  std::string key_a = first_line(s.node_binary + " --init --data-dir " + (r.dir / "a").string());
  std::string key_b = first_line(s.node_binary + " --init --data-dir " + (r.dir / "b").string());
  write_config(r.dir / "a.toml", "bench-a", "bench-b", key_b, r.nats.port, s);
  write_config(r.dir / "b.toml", "bench-b", "bench-a", key_a, r.nats.port, s);
  auto start = [&](char const* name) {
    return spawn({s.node_binary, "--config", (r.dir / (std::string(name) + ".toml")).string(), "--data-dir",
                  (r.dir / name).string(), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"},
                 "petchat-node ready:");
  };
  r.a = start("a");
  r.b = start("b");
}

}  // namespace petchat::bench
