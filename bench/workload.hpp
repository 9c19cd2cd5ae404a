// What petchat-bench was asked to do, what a messaging workload measured, and how it is
// reported (a table for people, or one JSON object).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bench/process.hpp"
#include "bench/stats.hpp"
#include "client/client.hpp"

namespace CLI {
class App;
}

namespace petchat::bench {

struct options {
  std::string node_binary;
  std::string echo_binary;
  int pairs = 8;
  int window = 8;
  double duration_s = 5;
  double rate = 1000;
  int connections = 1000;
  int messages = 10000;
  int payload = 64;
  int members = 10;          // groups: members of the group, the sender included
  bool group_reads = false;  // groups: the members also mark what they get as read
  int threads = 2;
  sdk::encoding encoding = sdk::encoding::proto;  // of the tool's live-stream frames (not the echo's)
  bool durable = true;
  bool as_json = false;
};

// Runs `work` to completion on an io_context with o.threads threads; rethrows what it
// threw. A workload gives each connection a strand of that io_context.
void run(options const& o, boost::asio::awaitable<void> work);
// Swallows the end of a reader when the run closes its connections; anything else is a
// failed run, reported and fatal (a silently dead reader would stall the workload).
boost::asio::awaitable<void> guarded(boost::asio::awaitable<void> inner);

// Adds the options every workload takes (--node, --echo, --threads, --encoding, --json,
// --no-durability) to `app`, with the binaries next to this one as defaults.
void add_global_options(CLI::App& app, options& o);

struct message_result {
  double seconds = 0;
  std::uint64_t completed = 0;
  std::uint64_t cpu_us = 0;       // the server's (node, nodes and nats-server, or echo) over the run
  std::uint64_t tool_cpu_us = 0;  // this process's own, over the same interval
  std::uint64_t acks = 0;         // recipients' acks over the run (one per read that brought events)
  samples::summary accepted, recipient, receipt;
};

// A petchat-node started by the tool on a free loopback port, with limits that let the
// load through and its data in a temporary directory (or `dir`).
struct node_under_test {
  child process;
  std::filesystem::path dir;
  std::vector<std::string> argv;
  sdk::endpoint endpoint() const { return {"127.0.0.1", process.port}; }
};
node_under_test start_node(options const& o, std::filesystem::path dir = {});
// Stops the node and removes its directory.
void remove_node(node_under_test& n);

boost::json::object summary_json(samples::summary const& s);
void print_latency(char const* what, samples::summary const& s);
// Prints the result of a messaging workload (and the echo ceiling, if measured); 0.
int report_messages(options const& o, char const* workload, message_result const& r,
                    std::optional<message_result> echo);

// The groups workload (bench/groups.cpp), for o.members on a fresh node: one sender keeps
// o.window sends to a group in flight; every member reads and acknowledges on a live
// stream. Prints messages and deliveries per second, CPU per delivery and whether every
// member had every message at the end; 0.
int group_workload(options const& o);

// The assets workload (bench/assets.cpp) on a fresh node: the disk's own write+fsync and
// read of `size_mib`, then an upload and a download of that size (throughput against the
// disk's, and the node's memory growth), `concurrent` 1 MiB uploads at once, and `images`
// 12-megapixel JPEGs (the node's CPU per thumbnail); 0 if every upload succeeded.
int assets_workload(options const& o, std::uint64_t size_mib, int concurrent, int images);

}  // namespace petchat::bench
