// IP addresses and networks (see net.hpp).
#include "base/net/net.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <string>

namespace petchat::net {

std::optional<address_bytes> parse_address(std::string_view text) {
  std::string s(text);
  address_bytes out{};
  if (unsigned char v4[4]; inet_pton(AF_INET, s.c_str(), v4) == 1) {
    out[10] = out[11] = 0xff;
    std::copy(v4, v4 + 4, out.begin() + 12);
    return out;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) return out;
  return std::nullopt;
}

bool in_prefix(address_bytes const& addr, address_bytes const& net, unsigned prefix) {
  for (unsigned i = 0; i < 16 && prefix > 0; ++i) {
    unsigned bits = prefix < 8 ? prefix : 8;
    auto mask = static_cast<unsigned char>(0xff << (8 - bits));
    if ((addr[i] & mask) != (net[i] & mask)) return false;
    prefix -= bits;
  }
  return true;
}

std::optional<network> parse_network(std::string_view text, bool bare_address) {
  auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr) return std::nullopt;
  bool v4 = text.substr(0, slash).find(':') == std::string_view::npos;
  unsigned width = v4 ? 32 : 128;
  if (slash == std::string_view::npos) {
    if (!bare_address) return std::nullopt;
    return network{*addr, 128};
  }
  auto bits = text.substr(slash + 1);
  unsigned prefix = 0;
  auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
  if (bits.empty() || ec != std::errc{} || end != bits.data() + bits.size() || prefix > width) return std::nullopt;
  return network{*addr, v4 ? prefix + 96 : prefix};
}

bool contains(std::vector<network> const& networks, address_bytes const& a) {
  for (auto const& n : networks)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace petchat::net
