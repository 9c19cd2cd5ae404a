#include "node/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <mutex>
#include <unordered_map>
#include <vector>

namespace petchat::metrics {

namespace {

using prometheus::Histogram;

// Seconds, from a quarter of a millisecond (a cached read, a commit without fsync) to
// ten seconds (something is badly wrong).
Histogram::BucketBoundaries const latency_buckets{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,    0.1,    0.25,  0.5,    1,     2.5,  10};
// Seconds between regions: a WAN round trip to an outage of an hour.
Histogram::BucketBoundaries const federation_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                     2.5,   5,    10,    30,   60,  300,  900, 3600};
// Requests per group commit: powers of two up to the writers' batch limit (1024).
Histogram::BucketBoundaries const batch_buckets{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

struct sampled {
  std::string name, help;
  prometheus::MetricType type;
  std::function<series()> read;
};

}  // namespace

struct registry::impl {
  std::shared_ptr<prometheus::Registry> reg = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
                                                          .Name("petchat_http_requests_total")
                                                          .Help("HTTP requests answered, by API and status class")
                                                          .Register(*reg);
  prometheus::Family<Histogram>& request_seconds =
      prometheus::BuildHistogram()
          .Name("petchat_http_request_duration_seconds")
          .Help("HTTP requests from their header to the answer, by API, route, method and status")
          .Register(*reg);
  prometheus::Counter& accepted = prometheus::BuildCounter()
                                      .Name("petchat_messages_accepted_total")
                                      .Help("Messages accepted (durable) from senders of this region")
                                      .Register(*reg)
                                      .Add({});
  Histogram& accept_seconds = prometheus::BuildHistogram()
                                  .Name("petchat_send_accepted_seconds")
                                  .Help("From a send frame's arrival to its `accepted` (the message durable)")
                                  .Register(*reg)
                                  .Add({}, latency_buckets);
  prometheus::Family<prometheus::Counter>& rejected = prometheus::BuildCounter()
                                                          .Name("petchat_messages_rejected_total")
                                                          .Help("Sends refused, by error code")
                                                          .Register(*reg);
  prometheus::Counter& login_failures = prometheus::BuildCounter()
                                            .Name("petchat_login_failures_total")
                                            .Help("Failed login attempts (wrong name or password)")
                                            .Register(*reg)
                                            .Add({});
  prometheus::Family<prometheus::Counter>& disconnects = prometheus::BuildCounter()
                                                             .Name("petchat_ws_disconnects_total")
                                                             .Help("Live streams ended, by reason")
                                                             .Register(*reg);
  prometheus::Family<prometheus::Counter>& pushes = prometheus::BuildCounter()
                                                        .Name("petchat_push_sent_total")
                                                        .Help("Push attempts, by target kind and result")
                                                        .Register(*reg);
  prometheus::Family<prometheus::Counter>& push_removed = prometheus::BuildCounter()
                                                              .Name("petchat_push_targets_removed_total")
                                                              .Help("Push targets removed, by reason")
                                                              .Register(*reg);
  prometheus::Family<Histogram>& commit_seconds = prometheus::BuildHistogram()
                                                      .Name("petchat_store_commit_seconds")
                                                      .Help("Group commits (the write and its fsync), by store")
                                                      .Register(*reg);
  prometheus::Family<Histogram>& commit_requests = prometheus::BuildHistogram()
                                                       .Name("petchat_store_commit_batch_size")
                                                       .Help("Write requests made durable per group commit, by store")
                                                       .Register(*reg);
  prometheus::Family<Histogram>& federation_seconds =
      prometheus::BuildHistogram()
          .Name("petchat_federation_applied_seconds")
          .Help("From a durable envelope's creation at its origin region to its application here, by origin")
          .Register(*reg);
  std::mutex samplers_mutex;  // guards samplers
  std::vector<sampled> samplers;

  // The histogram of a family for a label set, made once: prometheus-cpp's Add builds a
  // whole histogram (its buckets) before it looks the labels up.
  std::mutex histograms_mutex;  // guards histograms
  std::unordered_map<std::string, Histogram*> histograms;
  Histogram& histogram(prometheus::Family<Histogram>& family, prometheus::Labels const& labels,
                       Histogram::BucketBoundaries const& buckets) {
    std::string key = family.GetName();
    for (auto const& [k, v] : labels) ((key += '\0') += k) += '\0' + v;
    std::lock_guard lock(histograms_mutex);
    auto& h = histograms[key];
    if (!h) h = &family.Add(labels, buckets);
    return *h;
  }
};

registry::registry(std::string const& version, std::string const& region) : impl_(std::make_unique<impl>()) {
  prometheus::BuildGauge()
      .Name("petchat_build_info")
      .Help("Always 1; the labels say which node this is")
      .Register(*impl_->reg)
      .Add({{"version", version}, {"region", region}})
      .Set(1);
}

registry::~registry() = default;

void registry::http_request(char const* api, unsigned status) {
  static char const* const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  unsigned c = status / 100;
  char const* cls = c >= 1 && c <= 5 ? classes[c - 1] : "5xx";
  impl_->requests.Add({{"api", api}, {"status", cls}}).Increment();
}

void registry::http_request(char const* api, std::string const& route, std::string const& method, unsigned status,
                            std::chrono::nanoseconds took) {
  http_request(api, status);
  impl_
      ->histogram(impl_->request_seconds,
                  {{"api", api}, {"route", route}, {"method", method}, {"status", std::to_string(status)}},
                  latency_buckets)
      .Observe(seconds(took));
}

void registry::message_accepted(std::chrono::nanoseconds took) {
  impl_->accepted.Increment();
  impl_->accept_seconds.Observe(seconds(took));
}

void registry::message_rejected(std::string const& reason) {
  impl_->rejected.Add({{"reason", reason}}).Increment();
}

void registry::login_failed() {
  impl_->login_failures.Increment();
}

void registry::live_stream_ended(char const* reason) {
  impl_->disconnects.Add({{"reason", reason}}).Increment();
}

void registry::push_sent(std::string const& kind, char const* result) {
  impl_->pushes.Add({{"kind", kind}, {"result", result}}).Increment();
}

void registry::push_target_removed(char const* reason) {
  impl_->push_removed.Add({{"reason", reason}}).Increment();
}

void registry::federation_applied(std::string const& region, std::chrono::nanoseconds took) {
  impl_->histogram(impl_->federation_seconds, {{"region", region}}, federation_buckets)
      .Observe(std::max(0.0, seconds(took)));  // a clock behind the origin's would make it negative
}

void registry::store_committed(char const* store, std::size_t requests, std::chrono::nanoseconds took) {
  impl_->histogram(impl_->commit_seconds, {{"store", store}}, latency_buckets).Observe(seconds(took));
  impl_->histogram(impl_->commit_requests, {{"store", store}}, batch_buckets).Observe(static_cast<double>(requests));
}

void registry::add_gauge(std::string const& name, std::string const& help, sampler read) {
  add_gauges(name, help, [read = std::move(read)] { return series{{{}, read()}}; });
}

void registry::add_counter(std::string const& name, std::string const& help, sampler read) {
  add_counters(name, help, [read = std::move(read)] { return series{{{}, read()}}; });
}

void registry::add_gauges(std::string const& name, std::string const& help, std::function<series()> read) {
  std::lock_guard lock(impl_->samplers_mutex);
  impl_->samplers.push_back({name, help, prometheus::MetricType::Gauge, std::move(read)});
}

void registry::add_counters(std::string const& name, std::string const& help, std::function<series()> read) {
  std::lock_guard lock(impl_->samplers_mutex);
  impl_->samplers.push_back({name, help, prometheus::MetricType::Counter, std::move(read)});
}

std::string registry::scrape() {
  auto families = impl_->reg->Collect();
  std::lock_guard lock(impl_->samplers_mutex);
  for (auto const& s : impl_->samplers) {
    prometheus::MetricFamily f{s.name, s.help, s.type, {}};
    for (auto const& [labels, value] : s.read()) {
      prometheus::ClientMetric m;
      for (auto const& [k, v] : labels) m.label.push_back({k, v});
      if (s.type == prometheus::MetricType::Counter)
        m.counter.value = value;
      else
        m.gauge.value = value;
      f.metric.push_back(std::move(m));
    }
    families.push_back(std::move(f));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace petchat::metrics
