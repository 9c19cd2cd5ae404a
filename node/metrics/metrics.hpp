// The node's Prometheus metrics, served as text on GET /metrics. Names are `petchat_*`
// (and the standard `process_*`), units in the name, monotonic values are counters ending
// in `_total` (docs/PROTOCOL.md, "Metrics", lists them all).
//
// Counters and histograms are bumped where things happen (any thread; prometheus-cpp's
// are thread-safe). Values that other components already keep (group commits, live
// streams, outbox depths) are read at scrape time through samplers, so there is one
// source of truth for each.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace petchat::metrics {

using labels = std::map<std::string, std::string>;
// A sampled family's series at one scrape: labels and value.
using series = std::vector<std::pair<labels, double>>;

class registry {
 public:
  registry(std::string const& version, std::string const& region);
  ~registry();

  // An HTTP answer: counted by API and status class, and its duration by API, route (a
  // template such as "/v1/conversations/{id}/messages"), method and status.
  void http_request(char const* api, unsigned status);
  void http_request(char const* api, std::string const& route, std::string const& method, unsigned status,
                    std::chrono::nanoseconds took);
  // A send answered `accepted` (durable), and how long it took from the frame's arrival.
  void message_accepted(std::chrono::nanoseconds took);
  // A send refused, by its error code (petchat_messages_rejected_total{reason}).
  void message_rejected(std::string const& reason);
  void login_failed();
  // A live stream ended, and why (petchat_ws_disconnects_total{reason}).
  void live_stream_ended(char const* reason);
  // A push attempt (petchat_push_sent_total{kind,result}); a target removed
  // (petchat_push_targets_removed_total{reason}).
  void push_sent(std::string const& kind, char const* result);
  void push_target_removed(char const* reason);
  // A group commit of a store ("messages" or "users"): its requests and its duration.
  // A durable envelope from `region` applied here, `took` after its origin made it (the
  // origin's clock against this one's).
  void federation_applied(std::string const& region, std::chrono::nanoseconds took);
  void store_committed(char const* store, std::size_t requests, std::chrono::nanoseconds took);

  // Values read at every scrape. A gauge without labels; a monotonic count since start
  // (a counter); families whose series the sampler lists each time (one that is no
  // longer listed is no longer exported).
  using sampler = std::function<double()>;
  void add_gauge(std::string const& name, std::string const& help, sampler read);
  void add_counter(std::string const& name, std::string const& help, sampler read);
  void add_gauges(std::string const& name, std::string const& help, std::function<series()> read);
  void add_counters(std::string const& name, std::string const& help, std::function<series()> read);

  // The Prometheus text exposition of everything.
  std::string scrape();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// The standard process metrics of this process, from /proc/self: CPU seconds, resident
// and virtual memory, open and maximum file descriptors, start time.
void add_process_metrics(registry& r);

}  // namespace petchat::metrics
