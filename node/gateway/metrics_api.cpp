// The metrics listener: Prometheus scrapes GET /metrics here, on an address of its own
// (metrics.listen, loopback by default), so the node's figures are not on the chat port.
#include "node/gateway/detail/user_api.hpp"
#include "node/gateway/gateway.hpp"

namespace petchat::gateway {

namespace {

awaitable<response> serve_metrics(metrics::registry* metrics, request r) {
  if (r.path != "/metrics") co_return error_response(errors::fail(errors::code::not_found, "only /metrics is here"));
  if (r.method != "GET" && r.method != "HEAD") co_return detail::method_not_allowed("GET, HEAD");
  auto res = response{200, metrics->scrape(), "text/plain; version=0.0.4; charset=utf-8", {}, nullptr, 0, 0};
  metrics->http_request("metrics", res.status);
  co_return res;
}

}  // namespace

handler make_metrics_api(metrics::registry& metrics) {
  return [m = &metrics](request r) { return serve_metrics(m, std::move(r)); };
}

}  // namespace petchat::gateway
