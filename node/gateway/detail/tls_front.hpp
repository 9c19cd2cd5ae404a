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

namespace petchat::gateway::detail {

struct tls_limits {
  std::chrono::milliseconds handshake;  // from the connection's first byte to a finished handshake
  std::chrono::milliseconds write;      // for one piece written either way (a client that stops reading)
};

// Runs on the connection's strand until both directions are closed. After a handshake,
// `serve` gets the plaintext end (a tcp::socket over the pair, on the same strand) and owns
// it; if the handshake fails, `failed` gets the reason in words and the connection is closed.
boost::asio::awaitable<void> terminate_tls(std::shared_ptr<boost::asio::ssl::context> context,
                                           boost::asio::ip::tcp::socket socket, tls_limits limits,
                                           std::function<void(boost::asio::ip::tcp::socket)> serve,
                                           std::function<void(std::string const&)> failed);

}  // namespace petchat::gateway::detail
