// The admin API's federation: `petchatctl federation status` and `drop-outbox`
// (admin_federation.hpp).
#include "node/gateway/detail/admin_federation.hpp"

#include "node/async/async.hpp"
#include "node/gateway/detail/json_body.hpp"

namespace petchat::gateway::detail {

using boost::asio::awaitable;
using errors::code;
using errors::fail;

// `petchatctl federation status`.
json::object federation_status(federation_view const& fed, std::string const& self) {
  json::object o{{"region", self}};
  if (!fed.link) {
    o["enabled"] = false;
    return o;
  }
  auto s = fed.link->snapshot();
  auto now = format::now_ms();
  json::array regions;
  for (auto const& r : s.regions)
    regions.push_back(json::object{{"region", r.region},
                                   {"listed", r.listed},
                                   {"outbox", r.outbox},
                                   {"oldest_undelivered_s", r.oldest_undelivered_ms / 1000},
                                   {"inbound", r.inbound}});
  json::object rejects;
  for (auto const& [reason, n] : s.rejects) rejects[reason] = n;
  o["enabled"] = true;
  o["connected"] = s.connected;
  o["server"] = s.server;
  o["last_error"] = s.last_error;
  o["stream"] = s.stream;
  o["stream_last_seq"] = s.stream_last_seq;
  o["applied_position"] = s.applied_position;
  o["inbound_backlog"] = s.inbound_backlog;
  o["published"] = s.published;
  o["applied"] = s.applied;
  o["regions"] = std::move(regions);
  o["rejects"] = std::move(rejects);
  o["at"] = rfc3339(now);
  return o;
}

// `petchatctl federation drop-outbox <region>`: gives up what is held for a region out of
// the directory. The link does it on its manager thread; this waits on the CPU pool.
awaitable<response> drop_outbox(federation_view fed, std::string self, boost::asio::thread_pool& pool,
                                std::string region) {
  if (!fed.link) co_return error_response(fail(code::not_found, "federation is not configured on this node"));
  if (region == self || fed.regions.is_remote(region))
    co_return error_response(fail(code::region_listed, "region '" + region + "' is " +
                                                           (region == self ? "this one" : "listed") +
                                                           ": only a region out of federation.regions has its outbox "
                                                           "dropped (take it out and reload first)"));
  auto work = [link = fed.link, region] { return link->drop_outbox(region, 60000); };
  auto dropped = co_await async::offload(pool, std::move(work));
  if (!dropped.error.empty()) co_return error_response(fail(code::internal, dropped.error));
  co_return json_response(200, json::object{{"region", region}, {"dropped", dropped.entries}});
}

}  // namespace petchat::gateway::detail
