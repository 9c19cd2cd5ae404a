// Checks of the network addresses a config names (push.allow_networks, push.nameservers,
// gateway.trusted_proxies).
#pragma once

#include <optional>
#include <string>

namespace petchat::config::detail {

// "a.b.c.d/n" or "v6/n".
bool valid_cidr(std::string const& v);

// A network as above, or a single address ("10.1.2.3", "2001:db8::1").
bool valid_network_or_address(std::string const& v);
// A valid network that covers more than a /8 of IPv4 or IPv6 addresses (all of IPv4 counts:
// ::/8 holds the IPv4-mapped ones).
bool network_too_wide(std::string const& v);

// A web origin as browsers send it: "https://host" or "http://host:port" (no path, no
// trailing slash), or "*".
std::optional<std::string> check_origin(std::string const& v);

// "a.b.c.d", "a.b.c.d:port", a bare IPv6 address, "[v6]" or "[v6]:port"; port 1-65535.
bool valid_nameserver(std::string const& v);

}  // namespace petchat::config::detail
