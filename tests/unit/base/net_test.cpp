#include <doctest/doctest.h>

#include "base/net/net.hpp"

using namespace petchat::net;

namespace {

std::vector<network> networks(std::initializer_list<char const*> texts) {
  std::vector<network> out;
  for (auto t : texts) out.push_back(*parse_network(t, true));
  return out;
}

}  // namespace

TEST_CASE("networks: CIDR, and single addresses only when asked") {
  CHECK(parse_network("10.0.0.0/8"));
  CHECK(parse_network("fd00::/8"));
  CHECK_FALSE(parse_network("10.0.0.0/33"));
  CHECK_FALSE(parse_network("10.0.0.0"));
  CHECK(parse_network("10.0.0.1", true));
  CHECK_FALSE(parse_network("nonsense/8"));
  CHECK_FALSE(parse_network("10.0.0.0/"));
  CHECK_FALSE(parse_network("10.0.0.0/8x"));
  auto n = networks({"10.20.0.0/16", "fd00:1::/32", "192.0.2.7"});
  CHECK(contains(n, *parse_address("10.20.3.4")));
  CHECK(contains(n, *parse_address("::ffff:10.20.3.4")));  // mapped: as its IPv4 address
  CHECK_FALSE(contains(n, *parse_address("10.21.0.1")));
  CHECK(contains(n, *parse_address("fd00:1::5")));
  CHECK_FALSE(contains(n, *parse_address("fd00:2::5")));
  CHECK(contains(n, *parse_address("192.0.2.7")));
  CHECK_FALSE(contains(n, *parse_address("192.0.2.8")));
  CHECK(to_text(*parse_address("::ffff:10.1.2.3")) == "10.1.2.3");
  CHECK(to_text(*parse_address("2001:DB8:0::1")) == "2001:db8::1");
}

TEST_CASE("forwarded_client: headers believed only as far as trusted proxies wrote them") {
  auto trusted = networks({"127.0.0.1", "10.0.0.0/8"});
  // Not from a trusted proxy: the headers are the client's own words.
  CHECK(forwarded_client("203.0.113.9", "198.51.100.1", false, trusted) == "203.0.113.9");
  // From the proxy: its hop is believed, what the client wrote to the left of it is not.
  CHECK(forwarded_client("127.0.0.1", "198.51.100.1", false, trusted) == "198.51.100.1");
  CHECK(forwarded_client("127.0.0.1", "6.6.6.6, 198.51.100.1", false, trusted) == "198.51.100.1");
  // Through two trusted proxies.
  CHECK(forwarded_client("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.1.1", false, trusted) == "198.51.100.1");
  // Ports and spaces as some proxies write them.
  CHECK(forwarded_client("127.0.0.1", " 198.51.100.1:5555 ", false, trusted) == "198.51.100.1");
  CHECK(forwarded_client("127.0.0.1", "[2001:db8::7]:443", false, trusted) == "2001:db8::7");
  // Garbage stops the walk at the last known hop.
  CHECK(forwarded_client("127.0.0.1", "unknown", false, trusted) == "127.0.0.1");
  CHECK(forwarded_client("127.0.0.1", "198.51.100.1, garbage, 10.1.1.1", false, trusted) == "10.1.1.1");
  // No header from a trusted proxy: the proxy itself.
  CHECK(forwarded_client("127.0.0.1", "", false, trusted) == "127.0.0.1");
  // RFC 7239, when the proxies write that header (gateway.forwarded_header).
  CHECK(forwarded_client("127.0.0.1", "for=198.51.100.1;proto=https", true, trusted) == "198.51.100.1");
  CHECK(forwarded_client("127.0.0.1", R"(for=6.6.6.6, For="[2001:db8:cafe::17]:4711")", true, trusted) ==
        "2001:db8:cafe::17");
  CHECK(forwarded_client("127.0.0.1", "for=_hidden, for=unknown", true, trusted) == "127.0.0.1");
  CHECK(forwarded_client("127.0.0.1", "proto=https", true, trusted) == "127.0.0.1");
  // No trusted proxies configured: never believed.
  CHECK(forwarded_client("127.0.0.1", "198.51.100.1", false, {}) == "127.0.0.1");
}

TEST_CASE("limit_key: an IPv6 client is its /64, an IPv4 one its address") {
  CHECK(petchat::net::limit_key("198.51.100.7") == "198.51.100.7");
  CHECK(petchat::net::limit_key("::ffff:198.51.100.7") == "::ffff:198.51.100.7");
  CHECK(petchat::net::limit_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64");
  CHECK(petchat::net::limit_key("2001:db8:1:2::1") == petchat::net::limit_key("2001:db8:1:2:ffff::9"));
  CHECK(petchat::net::limit_key("2001:db8:1:3::1") != petchat::net::limit_key("2001:db8:1:2::1"));
  CHECK(petchat::net::limit_key("not an address") == "not an address");
}

TEST_CASE("wide_limit_key: an IPv6 client's /48; nothing for IPv4") {
  CHECK(petchat::net::wide_limit_key("2001:db8:1:2:aaaa::1") == "2001:db8:1::/48");
  CHECK(petchat::net::wide_limit_key("2001:db8:1:ff00::1") == petchat::net::wide_limit_key("2001:db8:1:2::9"));
  CHECK(petchat::net::wide_limit_key("2001:db8:2::1") != petchat::net::wide_limit_key("2001:db8:1::1"));
  CHECK(petchat::net::wide_limit_key("198.51.100.7").empty());
  CHECK(petchat::net::wide_limit_key("::ffff:198.51.100.7").empty());
  CHECK(petchat::net::wide_limit_key("not an address").empty());
}
