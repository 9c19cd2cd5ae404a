// The live stream (/v1/ws): one live stream per WebSocket connection, handed over by the HTTP
// server after it has read the upgrade request. Included only by Beast translation units.
// The stream owns the connection from then on and calls `on_end` once it is closed.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

// What shutdown() may touch of a live connection. Only used on the connection's strand;
// `cancel` is cleared when the connection ends.
struct connection_control {
  std::function<void()> cancel;
  bool idle = true;             // an idle HTTP connection, or a WebSocket (closed with 1001 at shutdown)
  bool stop_requested = false;  // shutdown() reached it (perhaps before `cancel` was set)
};

using live_services = http_server::live_stream;

// Starts the stream on the socket's executor (the connection's strand) and returns.
// `early`: bytes the client sent after the upgrade request that the HTTP server had read
// already (frames sent without waiting for the 101): the stream's first input.
void start_live_stream(std::shared_ptr<live_services> services, boost::asio::ip::tcp::socket socket,
                       std::unique_ptr<boost::beast::http::request<boost::beast::http::string_body>> upgrade,
                       std::string early, std::shared_ptr<connection_control> control, std::function<void()> on_end);

}  // namespace petchat::gateway::detail
