// The per-address connection caps (node/gateway/detail/address_counts.hpp).
#include "node/gateway/detail/address_counts.hpp"

#include <doctest/doctest.h>

#include <string>

using petchat::gateway::detail::address_counts;

TEST_CASE("an address is held to its cap, and gives its places back") {
  address_counts counts(3, nullptr);
  for (int i = 0; i < 3; ++i) CHECK(counts.claim("192.0.2.7"));
  CHECK_FALSE(counts.claim("192.0.2.7"));
  CHECK(counts.claim("192.0.2.8"));  // another address has places of its own
  counts.release("192.0.2.7");
  CHECK(counts.claim("192.0.2.7"));
  for (int i = 0; i < 3; ++i) counts.release("192.0.2.7");
  counts.release("192.0.2.8");
  CHECK(counts.keys() == 0);
}

TEST_CASE("an IPv6 client is counted by its /64, and its /48 by four /64s' worth") {
  address_counts counts(2, nullptr);
  // Two addresses of one /64 share its cap.
  CHECK(counts.claim("2001:db8:1:1::1"));
  CHECK(counts.claim("2001:db8:1:1::2"));
  CHECK_FALSE(counts.claim("2001:db8:1:1::3"));
  // New /64s of the same /48: 8 connections in all, then no more from that /48.
  int taken = 2;
  for (int net = 2; net < 10; ++net)
    for (int host = 1; host <= 2; ++host)
      if (counts.claim("2001:db8:1:" + std::to_string(net) + "::" + std::to_string(host))) ++taken;
  CHECK(taken == 2 * address_counts::wide_factor);
  CHECK(counts.claim("2001:db8:2:1::1"));  // another /48 is not held back
  // A refused /64 keeps no key; releasing gives the /48 its place back.
  auto keys = counts.keys();
  CHECK_FALSE(counts.claim("2001:db8:1:99::1"));
  CHECK(counts.keys() == keys);
  counts.release("2001:db8:1:1::1");
  CHECK(counts.claim("2001:db8:1:99::1"));
}

TEST_CASE("an exempt address (a trusted proxy) has no cap and is counted alone") {
  address_counts counts(1, [](std::string const& a) { return a == "2001:db8:1:1::10"; });
  for (int i = 0; i < 10; ++i) CHECK(counts.claim("2001:db8:1:1::10"));
  // Its /64 and /48 neighbours are not charged for it.
  CHECK(counts.claim("2001:db8:1:1::11"));
  CHECK_FALSE(counts.claim("2001:db8:1:1::12"));
  for (int i = 0; i < 10; ++i) counts.release("2001:db8:1:1::10");
  counts.release("2001:db8:1:1::11");
  CHECK(counts.keys() == 0);
}

TEST_CASE("a refusal being answered is counted over the caps, and released like any") {
  address_counts counts(1, nullptr);
  CHECK(counts.claim("2001:db8:1:1::1"));
  counts.claim_over_cap("2001:db8:1:1::1");
  counts.release("2001:db8:1:1::1");
  counts.release("2001:db8:1:1::1");
  CHECK(counts.keys() == 0);
}
