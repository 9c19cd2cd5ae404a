// The admin API's federation: `petchatctl federation status` and `drop-outbox`
// (admin_federation.hpp).
#include "node/gateway/detail/admin_federation.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <future>

#include "base/ids/ids.hpp"
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
// the directory. The link's manager thread does it between rounds; this polls its answer
// (no thread waits), for up to a minute.
awaitable<response> drop_outbox(federation_view fed, std::string self, std::string region) {
  if (!fed.link) co_return error_response(fail(code::not_found, "federation is not configured on this node"));
  if (!ids::is_valid_name(region))
    co_return error_response(fail(code::invalid_field, "not a region name: 3 to 32 of a-z 0-9 . _ -, a letter first"));
  if (region == self || fed.regions.is_remote(region))
    co_return error_response(fail(code::region_listed, "region '" + region + "' is " +
                                                           (region == self ? "this one" : "listed") +
                                                           ": only a region out of federation.regions has its outbox "
                                                           "dropped (take it out and reload first)"));
  auto answer = fed.link->drop_outbox(region);
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (int waited_ms = 0; answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready; waited_ms += 100) {
    if (waited_ms >= 60000)
      co_return error_response(fail(code::internal,
                                    "the federation link did not get to it within 60 s (it does it between publish "
                                    "rounds); it is still queued: see the log, or petchatctl federation status"));
    timer.expires_after(std::chrono::milliseconds(100));
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
  auto dropped = answer.get();
  using outcome = federation::local_store::dropped::outcome;
  switch (dropped.what) {
    case outcome::done:
      co_return json_response(200, json::object{{"region", region}, {"dropped", dropped.entries}});
    case outcome::no_lane:
      co_return error_response(fail(code::not_found, "nothing is held for region '" + region + "'"));
    case outcome::listed:
      co_return error_response(
          fail(code::region_listed, "region '" + region + "' was listed again meanwhile (" +
                                        std::to_string(dropped.entries) +
                                        " entries were dropped before): what is queued now stays"));
    case outcome::failed:
      break;
  }
  co_return error_response(fail(code::internal, "the outbox could not be dropped: " + dropped.error));
}

}  // namespace petchat::gateway::detail
