// IP addresses and networks as text in configs and headers: parsed, and matched over 128
// bits (an IPv4 address as its IPv4-mapped IPv6 form, so one network list holds both).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace petchat::net {

using address_bytes = std::array<unsigned char, 16>;

// "192.0.2.1" or "2001:db8::1" (no brackets, no port, no zone).
std::optional<address_bytes> parse_address(std::string_view text);

// Whether the first `prefix` bits of two addresses agree.
bool in_prefix(address_bytes const& addr, address_bytes const& net, unsigned prefix);

struct network {
  address_bytes bytes{};
  unsigned prefix = 0;  // over the 128 bits
  bool contains(address_bytes const& a) const { return in_prefix(a, bytes, prefix); }
};

// "10.0.0.0/8", "fd00::/8"; with `bare_address`, also "10.1.2.3" (a network of one).
std::optional<network> parse_network(std::string_view text, bool bare_address = false);

// Whether an address is inside any of the networks.
bool contains(std::vector<network> const& networks, address_bytes const& a);

// An address as text: IPv4 (also an IPv4-mapped one) dotted, IPv6 in RFC 5952 form.
std::string to_text(address_bytes const& a);

// What limits per client address count by: an IPv4 address itself, but an IPv6 address's
// /64 ("2001:db8:1:2::/64"): one subscriber holds a whole /64 and could take a new address
// per attempt. Text that is no address is its own key.
std::string limit_key(std::string const& address);
// The same a level wider, for limits that must also hold when one subscriber takes a new
// /64 per attempt: an IPv6 address's /48 (what a home or a host is commonly given; a /56
// too lies within it). Empty for anything else (an IPv4 address is its own key already).
std::string wide_limit_key(std::string const& address);

// The client a request comes from, given the peer that connected and what the one header
// its proxies write says: `Forwarded` (RFC 7239: `rfc7239`) or `X-Forwarded-For` (may be
// empty; repeated header lines joined by commas). Only one is read: a proxy passes the
// other on as the client wrote it. The header is believed only as
// far as trusted proxies added to them: from the right, each hop a trusted proxy names is
// the next one to look at, and the first hop that is not a trusted proxy is the client.
// An element that is no address ("unknown", an obfuscated name, garbage) stops the walk:
// the last address known, a trusted proxy, is returned. From a peer that is not a trusted
// proxy the headers are ignored and the peer is the client.
std::string forwarded_client(std::string const& peer, std::string_view header, bool rfc7239,
                             std::vector<network> const& trusted);

}  // namespace petchat::net
