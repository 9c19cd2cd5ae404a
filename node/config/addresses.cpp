// Checks of the network addresses a config names (see detail/addresses.hpp).
#include "node/config/detail/addresses.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

#include "base/net/net.hpp"

namespace petchat::config::detail {

namespace {

bool is_v4(std::string const& a) {
  unsigned char buf[4];
  return inet_pton(AF_INET, a.c_str(), buf) == 1;
}

bool is_v6(std::string const& a) {
  unsigned char buf[16];
  return inet_pton(AF_INET6, a.c_str(), buf) == 1;
}

bool valid_port(std::string const& p) {
  unsigned n = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n);
  return !p.empty() && ec == std::errc{} && end == p.data() + p.size() && n >= 1 && n <= 65535;
}

}  // namespace

bool valid_cidr(std::string const& v) {
  return net::parse_network(v).has_value();
}

bool valid_network_or_address(std::string const& v) {
  return net::parse_network(v, true).has_value();
}

bool network_too_wide(std::string const& v) {
  static constexpr net::address_bytes mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  auto n = net::parse_network(v, true);
  if (!n) return false;
  if (n->prefix < 8) return true;
  // A network holding the IPv4-mapped range (its prefix at most 96 and matching) covers every
  // IPv4 client; one inside it must be at least an IPv4 /8 (96 + 8).
  if (n->prefix <= 96) return net::in_prefix(mapped, n->bytes, n->prefix);
  return net::in_prefix(n->bytes, mapped, 96) && n->prefix < 104;
}

std::optional<std::string> check_origin(std::string const& v) {
  static constexpr char const* why =
      "expected an origin such as https://chat.example.org or http://host:8080, or \"*\"";
  if (v == "*") return std::nullopt;
  std::string rest;
  if (v.starts_with("https://"))
    rest = v.substr(8);
  else if (v.starts_with("http://"))
    rest = v.substr(7);
  else
    return why;
  if (rest.empty()) return why;
  for (unsigned char c : rest)
    if (!(std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']')) return why;
  return std::nullopt;
}

bool valid_nameserver(std::string const& v) {
  if (!v.empty() && v[0] == '[') {
    auto close = v.find(']');
    if (close == std::string::npos || !is_v6(v.substr(1, close - 1))) return false;
    auto rest = v.substr(close + 1);
    return rest.empty() || (rest[0] == ':' && valid_port(rest.substr(1)));
  }
  if (is_v6(v) || is_v4(v)) return true;
  auto colon = v.rfind(':');
  return colon != std::string::npos && is_v4(v.substr(0, colon)) && valid_port(v.substr(colon + 1));
}

}  // namespace petchat::config::detail
