// The metrics listener: Prometheus scrapes GET /metrics here, on an address of its own
// (metrics.listen, loopback by default), so the node's figures are not on the chat port.
#include "node/gateway/detail/user_api.hpp"
#include "node/gateway/gateway.hpp"

namespace petchat::gateway {

namespace {

response metrics_answer(metrics::registry* metrics, request const& r) {
  if (r.path != "/metrics") return error_response(errors::fail(errors::code::not_found, "only /metrics is here"));
  return detail::scrape_answer(*metrics, r.method);
}

// Every answer is counted, refusals too (petchat_http_requests_total by status class).
awaitable<response> serve_metrics(metrics::registry* metrics, request r) {
  auto res = metrics_answer(metrics, r);
  metrics->http_request("metrics", res.status);
  co_return res;
}

}  // namespace

// GET /metrics, alike wherever it is served (this listener, the chat port, the admin socket).
response detail::scrape_answer(metrics::registry& metrics, std::string const& method) {
  if (method != "GET" && method != "HEAD") return detail::method_not_allowed("GET, HEAD");
  return response{200, metrics.scrape(), "text/plain; version=0.0.4; charset=utf-8", {}, nullptr, 0, 0};
}

handler make_metrics_api(metrics::registry& metrics) {
  return [m = &metrics](request r) { return serve_metrics(m, std::move(r)); };
}

}  // namespace petchat::gateway
