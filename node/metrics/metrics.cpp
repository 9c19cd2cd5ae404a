#include "node/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <mutex>
#include <vector>

namespace petchat::metrics {

struct registry::impl {
  std::shared_ptr<prometheus::Registry> reg = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
                                                          .Name("petchat_http_requests_total")
                                                          .Help("HTTP requests answered, by API and status class")
                                                          .Register(*reg);
  prometheus::Counter& accepted = prometheus::BuildCounter()
                                      .Name("petchat_messages_accepted_total")
                                      .Help("Messages accepted (durable) from senders of this region")
                                      .Register(*reg)
                                      .Add({});
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
  std::mutex samplers_mutex;  // guards samplers
  std::vector<std::pair<prometheus::Gauge*, sampler>> samplers;
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

void registry::message_accepted() {
  impl_->accepted.Increment();
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

void registry::add_gauge(std::string const& name, std::string const& help, sampler read) {
  auto& gauge = prometheus::BuildGauge().Name(name).Help(help).Register(*impl_->reg).Add({});
  std::lock_guard lock(impl_->samplers_mutex);
  impl_->samplers.emplace_back(&gauge, std::move(read));
}

std::string registry::scrape() {
  {
    std::lock_guard lock(impl_->samplers_mutex);
    for (auto& [gauge, read] : impl_->samplers) gauge->Set(read());
  }
  return prometheus::TextSerializer().Serialize(impl_->reg->Collect());
}

}  // namespace petchat::metrics
