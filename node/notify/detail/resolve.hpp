// Asynchronous name resolution for pushes (c-ares on the node's io_context): every lookup
// is a query of its own, so a host whose nameserver never answers delays only itself —
// not other pushes' lookups, as the one resolver thread behind getaddrinfo would.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace petchat::notify::detail {

struct resolved {
  std::vector<boost::asio::ip::address> addresses;  // empty: `error` says why
  std::string error;
};

class name_resolver {
 public:
  // `nameservers`: "address" or "address:port" ("[v6]:port"); empty: the system's
  // (/etc/resolv.conf). /etc/hosts is read first either way. Throws if c-ares cannot start.
  name_resolver(boost::asio::io_context& io, std::vector<std::string> const& nameservers);
  // Ends every lookup ("stopped") and lets go of the sockets: only once the io_context has
  // stopped (nothing may run on the resolver's strand meanwhile).
  ~name_resolver();
  name_resolver(name_resolver const&) = delete;
  name_resolver& operator=(name_resolver const&) = delete;

  // The host's addresses (IPv4 and IPv6), or why there are none by `timeout`. Callable
  // from any executor; never throws.
  boost::asio::awaitable<resolved> resolve(std::string host, std::chrono::milliseconds timeout);

 private:
  struct core;
  std::shared_ptr<core> core_;
};

}  // namespace petchat::notify::detail
