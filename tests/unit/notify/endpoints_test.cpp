// The push endpoint rules (node/notify/detail/https.hpp): which URLs are taken apart how,
// which addresses are public, what an allow-list opens; and do-not-disturb windows.
#include <doctest/doctest.h>

#include <boost/asio/ip/address.hpp>

#include "node/notify/detail/https.hpp"
#include "node/notify/detail/service.hpp"

using namespace petchat::notify::detail;
using boost::asio::ip::make_address;

TEST_CASE("https URLs are taken apart, and everything else refused with a reason") {
  std::string why;
  auto u = parse_https_url("https://Push.Example.org/wpush/v2/abc?x=1", why);
  REQUIRE(u);
  CHECK(u->host == "push.example.org");
  CHECK(u->port == 443);
  CHECK(u->target == "/wpush/v2/abc?x=1");
  CHECK(u->origin == "https://push.example.org");

  u = parse_https_url("https://push.example.org:443", why);
  REQUIRE(u);
  CHECK(u->origin == "https://push.example.org");  // RFC 6454: no default port
  CHECK(u->target == "/");

  u = parse_https_url("https://[2001:db8::1]:8443/p", why);
  REQUIRE(u);
  CHECK(u->host == "2001:db8::1");
  CHECK(u->port == 8443);
  CHECK(u->origin == "https://[2001:db8::1]:8443");

  for (char const* bad :
       {"http://push.example.org/", "ftp://x/", "https://", "https:///path", "https://user@push.example.org/",
        "https://a:b@push.example.org/", "https://push.example.org:0/", "https://push.example.org:65536/",
        "https://push.example.org:12x/", "https://[::1/", "https://[nothing]/", "https://push.example.org/a#b",
        "https://push.example.org/a b", "https://push.example.org/\r\nHost: evil"}) {
    CAPTURE(bad);
    why.clear();
    CHECK_FALSE(parse_https_url(bad, why));
    CHECK_FALSE(why.empty());
  }
  CHECK_FALSE(parse_https_url("https://x.org/" + std::string(1100, 'a'), why));
}

TEST_CASE("only public addresses are public") {
  for (char const* priv : {"127.0.0.1",
                           "10.1.2.3",
                           "172.16.0.1",
                           "172.31.255.255",
                           "192.168.1.1",
                           "169.254.169.254",
                           "100.64.0.1",
                           "0.0.0.0",
                           "224.0.0.1",
                           "255.255.255.255",
                           "198.18.0.1",
                           "192.0.2.1",
                           "::1",
                           "::",
                           "fe80::1",
                           "fc00::1",
                           "fd12::1",
                           "ff02::1",
                           "::ffff:127.0.0.1",
                           "::ffff:10.0.0.1",
                           "::127.0.0.1",
                           "64:ff9b::7f00:1",
                           "64:ff9b:1::a00:1",
                           "64:ff9b:1:ffff::808:808",
                           "::ffff:0:a00:1",
                           "::ffff:0:808:808",
                           "2001:db8::1",
                           "2002:7f00:1::"}) {
    CAPTURE(priv);
    CHECK_FALSE(is_public(make_address(priv)));
  }
  for (char const* pub : {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2a00:1450:4001:82a::200e",
                          "::ffff:8.8.8.8", "64:ff9b::808:808"}) {
    CAPTURE(pub);
    CHECK(is_public(make_address(pub)));
  }
}

TEST_CASE("allow-lists open hosts and networks, nothing else") {
  address_policy policy({"Gateway.LAN"}, {"10.20.0.0/16", "fd00:1::/32"});
  CHECK(policy.host_listed("gateway.lan"));
  CHECK_FALSE(policy.host_listed("other.lan"));
  CHECK(policy.allows(make_address("10.20.3.4"), 443));
  CHECK(policy.allows(make_address("::ffff:10.20.3.4"), 443));  // mapped: as its IPv4 address
  CHECK_FALSE(policy.allows(make_address("10.21.0.1"), 443));
  CHECK(policy.allows(make_address("fd00:1::5"), 443));
  CHECK_FALSE(policy.allows(make_address("fd00:2::5"), 443));
  CHECK(policy.allows(make_address("8.8.8.8"), 443));
  CHECK_FALSE(policy.allows(make_address("127.0.0.1"), 443));
  // Other ports: only inside an allow-listed network (or at a listed host), never merely public.
  CHECK(policy.allows(make_address("10.20.3.4"), 8443));
  CHECK_FALSE(policy.allows(make_address("8.8.8.8"), 8443));
  CHECK_FALSE(policy.allows(make_address("8.8.8.8"), 25));
}

TEST_CASE("do-not-disturb windows, across midnight and time zones") {
  petchat::messages::push_settings s;
  constexpr std::int64_t minute = 60000;
  std::int64_t const day = 1796169600000;  // a UTC midnight
  CHECK_FALSE(in_dnd(s, day));
  s.dnd = true;
  s.dnd_start_min = 22 * 60;
  s.dnd_end_min = 7 * 60;
  CHECK(in_dnd(s, day + 23 * 60 * minute));
  CHECK(in_dnd(s, day + 3 * 60 * minute));
  CHECK_FALSE(in_dnd(s, day + 7 * 60 * minute));
  CHECK_FALSE(in_dnd(s, day + 12 * 60 * minute));
  s.utc_offset_min = 120;  // 21:00 UTC is 23:00 local
  CHECK(in_dnd(s, day + 21 * 60 * minute));
  CHECK_FALSE(in_dnd(s, day + 19 * 60 * minute));
  s.dnd_start_min = s.dnd_end_min = 0;
  CHECK(in_dnd(s, day + 5 * minute));  // start = end: the whole day
}

TEST_CASE("a VAPID subject is judged by the host it names") {
  for (auto refused : {"mailto:ops@localhost", "mailto:ops@LOCALHOST", "mailto:ops@box.local",
                       "mailto:ops@example.invalid?subject=x", "https://localhost", "https://localhost:8443/",
                       "https://ops.example.local/", "https://a.localhost/", "https://box.LOCAL."}) {
    CAPTURE(refused);
    CHECK(subject_refused(refused));
  }
  for (auto taken : {"mailto:ops@example.org", "https://localhost.example.com/", "https://push.example.org:443/x",
                     "mailto:local@example.org", "https://example.org/localhost", "https://my-local/"}) {
    CAPTURE(taken);
    CHECK_FALSE(subject_refused(taken));
  }
}
