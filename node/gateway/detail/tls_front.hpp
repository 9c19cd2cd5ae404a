// TLS termination for the chat gateway (used by http_server.cpp): the handshake, then an
// AF_UNIX socket pair whose plaintext end is served like any TCP connection, while this
// relays bytes between it and the TLS stream. The HTTP server and the live stream thus run
// unchanged over TLS; the cost is one extra copy through the kernel per direction.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "node/gateway/detail/start_live_stream.hpp"

namespace petchat::gateway::detail {

struct tls_limits {
  std::chrono::milliseconds handshake;  // from the connection's first byte to a finished handshake
  std::chrono::milliseconds write;      // for one piece written to the client (a client that stops reading)
  std::chrono::milliseconds linger;     // after the gateway's end closed, for the client's last bytes
};

// Runs on the connection's strand until the connection is closed; every wait is bounded
// (a deadline closes the TCP socket, which ends whatever waits on it). During the handshake
// `control` lets the server's shutdown close the connection. After a handshake, `serve`
// gets the plaintext end (a tcp::socket over the pair, on the same strand) and owns it;
// otherwise `failed` gets the reason in words, and whether the fault is the node's (no file
// descriptors left, say) rather than the client's.
boost::asio::awaitable<void> terminate_tls(std::shared_ptr<boost::asio::ssl::context> context,
                                           boost::asio::ip::tcp::socket socket, tls_limits limits,
                                           std::shared_ptr<connection_control> control,
                                           std::function<void(boost::asio::ip::tcp::socket)> serve,
                                           std::function<void(std::string const&, bool)> failed);

}  // namespace petchat::gateway::detail
