// The node's Prometheus metrics, served as text on GET /metrics. Names are `petchat_*`,
// units in the name, counters end in `_total` (docs/PROTOCOL.md lists them).
//
// Counters are bumped where things happen (any thread; prometheus-cpp counters are
// atomic). Values that other components already keep (group commits, live sessions) are
// read at scrape time through `sampler`s, so there is one source of truth for each.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace petchat::metrics {

class registry {
 public:
  registry(std::string const& version, std::string const& region);
  ~registry();

  void http_request(char const* api, unsigned status);  // api: "user" or "admin"
  void message_accepted();
  void login_failed();
  // A live stream ended, and why (petchat_ws_disconnects_total{reason}).
  void live_stream_ended(char const* reason);
  // A push attempt (petchat_push_sent_total{kind,result}); a target removed
  // (petchat_push_targets_removed_total{reason}).
  void push_sent(std::string const& kind, char const* result);
  void push_target_removed(char const* reason);

  // Called at every scrape to refresh a gauge: name, help, and the current value.
  using sampler = std::function<double()>;
  void add_gauge(std::string const& name, std::string const& help, sampler read);

  // The Prometheus text exposition of everything.
  std::string scrape();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace petchat::metrics
