// The live stream (/v1/ws): one WebSocket session per connection, handed over by the HTTP
// server after it has read the upgrade request. Included only by Beast translation units.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "node/config/config.hpp"
#include "node/messages/messages.hpp"
#include "node/metrics/metrics.hpp"
#include "node/users/users.hpp"
#include "node/ws/ws.hpp"

namespace petchat::gateway::detail {

// What shutdown() may touch of a live connection. Only used on the connection's strand;
// `cancel` is cleared when the connection ends.
struct connection_control {
  std::function<void()> cancel;
  bool idle = true;  // an idle HTTP connection, or a WebSocket (closed with 1001 at shutdown)
};

struct live_services {
  users::user_service& users;
  messages::message_service& messages;
  ws::ws_manager& manager;
  metrics::registry& metrics;
  config::messages_section limits;
  std::string region;
};

boost::asio::awaitable<void> run_websocket(std::shared_ptr<live_services> services, boost::asio::ip::tcp::socket socket,
                                           boost::beast::http::request<boost::beast::http::string_body> upgrade,
                                           std::shared_ptr<connection_control> control);

}  // namespace petchat::gateway::detail
