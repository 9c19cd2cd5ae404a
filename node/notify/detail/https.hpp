// Outbound HTTPS for pushes: the endpoint rules (https only, public addresses unless
// allow-listed: no server-side request forgery) and one POST with timeouts, certificate
// verification, no redirects and a capped answer.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/net/net.hpp"
#include "node/notify/detail/resolve.hpp"

namespace petchat::notify::detail {

inline constexpr std::size_t max_endpoint_bytes = 1024;
inline constexpr std::size_t max_answer_bytes = 64 * 1024;

// An https URL taken apart.
struct https_url {
  std::string host;  // a name, or an address (IPv6 without brackets)
  std::uint16_t port = 443;
  std::string target;  // path and query, at least "/"
  std::string origin;  // "https://host[:port]", lower case, no default port (VAPID's audience)
};

// The URL, or why it is not one we push to (https, no user information, a host, a port
// 1-65535, at most max_endpoint_bytes, printable ASCII only).
std::optional<https_url> parse_https_url(std::string_view url, std::string& why);

// Which hosts and addresses pushes may go to: public addresses, and what the operator
// allow-lists (exact host names; networks in CIDR).
inline constexpr std::uint16_t https_port = 443;

class address_policy {
 public:
  // Networks must be valid CIDR (the config checks them); an invalid one is ignored.
  address_policy(std::vector<std::string> hosts, std::vector<std::string> const& networks);
  bool host_listed(std::string const& host) const;
  // Inside an allow-listed network, or public at port 443: the public internet's other
  // ports (its mail, SSH and database servers') are not the node's to knock on.
  bool allows(boost::asio::ip::address const& a, std::uint16_t port) const;
  // Whether any network is listed (a name may resolve into one later, at any port).
  bool lists_networks() const { return !networks_.empty(); }

 private:
  std::vector<std::string> hosts_;
  std::vector<net::network> networks_;
};

// Whether an address is public: not loopback, private, link-local, CGNAT, multicast,
// documentation, benchmarking or otherwise reserved (IPv4-mapped IPv6 as its IPv4).
bool is_public(boost::asio::ip::address const& a);

struct post_request {
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Asked once connected, just before the request is written (set: false withdraws it).
  std::function<bool()> still_wanted{};
};

struct http_answer {
  unsigned status = 0;  // 0: no answer (error says why)
  std::string body;     // at most max_answer_bytes
  std::optional<std::uint32_t> retry_after_s;
  std::string error;
  bool forbidden = false;  // the host resolved to no allowed address
  // Forbidden whatever the host's name resolves to later: a literal address, or a port
  // other than 443 of a host not allow-listed while no network is (counted towards the
  // target's removal).
  bool forbidden_for_good = false;
  bool withdrawn = false;  // still_wanted said no: nothing was sent
};

struct timeouts {
  std::chrono::milliseconds connect;  // resolving and connecting
  std::chrono::milliseconds answer;   // TLS handshake, request and answer
};

// Resolves the host (an allow-listed host: any address; else only allowed addresses are
// connected to), connects, verifies the certificate for the host, POSTs and reads the
// answer. Never throws. Run it on a strand of its own.
boost::asio::awaitable<http_answer> post(boost::asio::ssl::context& tls, address_policy const& policy,
                                         name_resolver& dns, https_url const& url, post_request request,
                                         timeouts limits);

// Resolves the host and checks that every address is allowed (registration). Empty if it
// is; else why not.
boost::asio::awaitable<std::string> check_endpoint(address_policy const& policy, name_resolver& dns, https_url url,
                                                   std::chrono::milliseconds timeout);

}  // namespace petchat::notify::detail
