// The state an http_server shares with its connection coroutines: limits, handler,
// acceptors, connection counts per address and the shutdown controls. Included by
// http_server.cpp (the connections) and listeners.cpp (binding) only.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "node/gateway/detail/address_counts.hpp"
#include "node/gateway/detail/start_live_stream.hpp"
#include "node/gateway/gateway.hpp"
#include "node/log/log.hpp"

namespace petchat::gateway {

struct http_server::state : std::enable_shared_from_this<http_server::state> {
  boost::asio::io_context& io;
  server_limits limits;
  handler handle;
  std::shared_ptr<spdlog::logger> log;
  log::throttle refusals_logged{std::chrono::seconds(1)};  // connections refused: a line a second at most
  std::unique_ptr<boost::asio::ip::tcp::acceptor> tcp_acceptor;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> unix_acceptor;
  std::filesystem::path unix_path;
  ino_t unix_inode = 0;                          // of the socket file we bound: only that one is removed at exit
  std::shared_ptr<detail::live_services> live;   // set if this server serves /v1/ws
  std::shared_ptr<tls::server_credentials> tls;  // set if the TCP listener speaks TLS
  std::function<bool(std::string_view, std::string_view)> streamed;  // requests whose bodies are streamed
  std::function<void(unsigned status)> refused;                      // told of each answer given before a handler ran
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> open{0};

  // Open TCP connections per client address (gateway.max_connections_per_address).
  detail::address_counts addresses{limits.max_connections_per_address,
                                   [this](std::string const& a) { return is_trusted_proxy(a); }};
  bool claim_address(std::string const& address) { return addresses.claim(address); }
  void claim_address_over_cap(std::string const& address) { addresses.claim_over_cap(address); }
  void release_address(std::string const& address) { addresses.release(address); }
  bool is_trusted_proxy(std::string const& address) const {
    auto a = net::parse_address(address);
    return a && net::contains(limits.trusted_proxies, *a);
  }

  std::mutex controls_mutex;  // guards controls and next_id; never held across I/O
  std::unordered_map<std::uint64_t,
                     std::pair<boost::asio::any_io_executor, std::shared_ptr<detail::connection_control>>>
      controls;
  std::uint64_t next_id = 0;

  state(boost::asio::io_context& i, server_limits l, handler h, std::string const& name)
      : io(i), limits(l), handle(std::move(h)), log(log::get(name)) {}
};

}  // namespace petchat::gateway
