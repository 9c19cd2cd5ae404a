// Two federated regions for the federation workload: a nats-server with JetStream and two
// petchat-nodes ("bench-a", "bench-b") whose directories list each other.
#pragma once

#include <filesystem>
#include <string>

#include "bench/process.hpp"

namespace petchat::bench {

struct region_settings {
  std::string node_binary;
  std::string nats_binary = "/usr/sbin/nats-server";
  int threads = 2;
  bool durable = true;
  int batch_delay_ms = -1;  // federation.batch_delay_ms of both nodes; -1: the node's default
};

struct two_regions {
  child nats, a, b;
  std::filesystem::path dir;  // everything lives under it

  two_regions() = default;
  two_regions(two_regions const&) = delete;
  two_regions& operator=(two_regions const&) = delete;
  ~two_regions();  // stops the three processes and removes `dir`
};

// Starts the three processes into `r`. Throws on failure (`r` cleans up what started).
void start_two_regions(region_settings const& s, two_regions& r);

}  // namespace petchat::bench
