#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

#include "bench/workload.hpp"

namespace petchat::bench {
namespace {

// A binary at `relative` from this one: the build tree's layout, wherever it was started from.
std::string sibling(char const* relative) {
  auto self = std::filesystem::canonical("/proc/self/exe").parent_path();
  return (self / relative).lexically_normal().string();
}

}  // namespace

void add_global_options(CLI::App& app, options& o) {
  o.node_binary = sibling("../node/app/petchat-node");
  o.echo_binary = sibling("petchat-echo");
  app.add_option("--node", o.node_binary, "petchat-node binary to start")->capture_default_str();
  app.add_option("--echo", o.echo_binary, "petchat-echo binary (bare transport ceiling)")->capture_default_str();
  app.add_option("--threads", o.threads, "I/O threads of the node, the echo server and this tool")
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--encoding",
         [&o](std::string const& name) { o.encoding = name == "json" ? sdk::encoding::json : sdk::encoding::proto; },
         "live-stream frames of this tool: proto (petchat.v1.proto) or json (petchat.v1.json)")
      ->check(CLI::IsMember({"proto", "json"}))
      ->default_str("proto");
  app.add_flag("--json", o.as_json, "print one JSON object");
  app.add_flag("!--no-durability", o.durable, "start the node with store.sync = false (comparison only)");
}

}  // namespace petchat::bench
