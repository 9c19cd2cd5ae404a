// The client address behind reverse proxies (see net.hpp, forwarded_client).
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include "base/net/net.hpp"

namespace petchat::net {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A node as proxies write it: "192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
// "[2001:db8::1]" or "[2001:db8::1]:4711", possibly quoted.
std::optional<address_bytes> parse_node(std::string_view v) {
  v = trim(v);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (!v.empty() && v.front() == '[') {
    auto close = v.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    return parse_address(v.substr(1, close - 1));
  }
  if (auto colon = v.find(':'); colon != std::string_view::npos && v.find(':', colon + 1) == std::string_view::npos)
    v = v.substr(0, colon);  // IPv4 with a port
  return parse_address(v);
}

// The `for=` parameter of one Forwarded element ("for=192.0.2.1;proto=https"), or the
// whole element when there is none (so it counts as an unknown hop).
std::string_view for_of(std::string_view element) {
  while (!element.empty()) {
    auto semi = element.find(';');
    auto pair = trim(element.substr(0, semi));
    if (pair.size() > 4 && std::tolower(static_cast<unsigned char>(pair[0])) == 'f' &&
        std::tolower(static_cast<unsigned char>(pair[1])) == 'o' &&
        std::tolower(static_cast<unsigned char>(pair[2])) == 'r' && pair[3] == '=')
      return pair.substr(4);
    if (semi == std::string_view::npos) break;
    element.remove_prefix(semi + 1);
  }
  return element;
}

}  // namespace

std::string to_text(address_bytes const& a) {
  static constexpr address_bytes mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN] = {};
  if (in_prefix(a, mapped, 96))
    inet_ntop(AF_INET, a.data() + 12, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, a.data(), buf, sizeof buf);
  return buf;
}

std::string limit_key(std::string const& address) {
  static constexpr address_bytes mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  auto a = parse_address(address);
  if (!a || in_prefix(*a, mapped, 96)) return address;
  std::fill(a->begin() + 8, a->end(), 0);
  return to_text(*a) + "/64";
}

std::string wide_limit_key(std::string const& address) {
  static constexpr address_bytes mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  auto a = parse_address(address);
  if (!a || in_prefix(*a, mapped, 96)) return {};
  std::fill(a->begin() + 6, a->end(), 0);
  return to_text(*a) + "/48";
}

std::string forwarded_client(std::string const& peer, std::string_view header, bool rfc7239,
                             std::vector<network> const& trusted) {
  auto current = parse_address(peer);
  if (!current || !contains(trusted, *current)) return peer;
  std::string_view list = header;
  while (!trim(list).empty()) {
    auto comma = list.rfind(',');
    auto element = comma == std::string_view::npos ? list : list.substr(comma + 1);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(0, comma);
    auto hop = parse_node(rfc7239 ? for_of(element) : element);
    if (!hop) break;
    current = hop;
    if (!contains(trusted, *current)) break;
  }
  return to_text(*current);
}

}  // namespace petchat::net
