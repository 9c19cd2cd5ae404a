// Outbound HTTPS for pushes (see detail/https.hpp).
#include "node/notify/detail/https.hpp"

#include <arpa/inet.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <algorithm>
#include <charconv>

#include "base/net/net.hpp"

namespace petchat::notify::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

std::array<unsigned char, 16> as_v6_bytes(asio::ip::address const& a) {
  if (a.is_v4()) return asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()).to_bytes();
  return a.to_v6().to_bytes();
}

bool public_v4(std::uint32_t a) {
  struct range {
    std::uint32_t net;
    unsigned prefix;
  };
  static constexpr range reserved[] = {
      {0x00000000, 8},  {0x0a000000, 8},  {0x64400000, 10}, {0x7f000000, 8},  {0xa9fe0000, 16},
      {0xac100000, 12}, {0xc0000000, 24}, {0xc0000200, 24}, {0xc0586300, 24}, {0xc0a80000, 16},
      {0xc6120000, 15}, {0xc6336400, 24}, {0xcb007100, 24}, {0xe0000000, 4},  {0xf0000000, 4},
  };
  for (auto const& r : reserved)
    if ((a >> (32 - r.prefix)) == (r.net >> (32 - r.prefix))) return false;
  return true;
}

std::optional<std::uint32_t> retry_after(std::string_view v) {
  std::uint32_t s = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), s);
  if (ec != std::errc() || end != v.data() + v.size() || v.empty()) return std::nullopt;  // HTTP-dates: our back-off
  return std::min<std::uint32_t>(s, 86400);
}

}  // namespace

bool is_public(asio::ip::address const& a) {
  if (a.is_v4()) return public_v4(a.to_v4().to_uint());
  auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return public_v4(asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_uint());
  auto b = v6.to_bytes();
  if (v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || v6.is_link_local() || v6.is_site_local())
    return false;
  if ((b[0] & 0xfe) == 0xfc) return false;  // fc00::/7, unique local
  static constexpr std::array<unsigned char, 16> zero{};
  if (net::in_prefix(b, zero, 96)) return false;  // ::/96, IPv4-compatible (deprecated)
  std::array<unsigned char, 16> nat64{0x00, 0x64, 0xff, 0x9b};
  if (net::in_prefix(b, nat64, 96))  // 64:ff9b::/96: the IPv4 address it stands for
    return public_v4(std::uint32_t(b[12]) << 24 | std::uint32_t(b[13]) << 16 | std::uint32_t(b[14]) << 8 | b[15]);
  // 64:ff9b:1::/48 (RFC 8215, a network's own translators: any IPv4 address, private ones
  // too, in a layout of the network's choosing) and ::ffff:0:0/96 (SIIT's IPv4-translated).
  std::array<unsigned char, 16> local_nat64{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01};
  std::array<unsigned char, 16> translated{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
  if (net::in_prefix(b, local_nat64, 48) || net::in_prefix(b, translated, 96)) return false;
  std::array<unsigned char, 16> doc{0x20, 0x01, 0x0d, 0xb8};
  std::array<unsigned char, 16> sixto4{0x20, 0x02};
  std::array<unsigned char, 16> ietf{0x20, 0x01};  // 2001::/23: Teredo, benchmarking, ORCHID
  std::array<unsigned char, 16> discard{0x01, 0x00};
  return !net::in_prefix(b, doc, 32) && !net::in_prefix(b, sixto4, 16) && !net::in_prefix(b, ietf, 23) &&
         !net::in_prefix(b, discard, 64);
}

address_policy::address_policy(std::vector<std::string> hosts, std::vector<std::string> const& networks)
    : hosts_(std::move(hosts)) {
  for (auto& h : hosts_) std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  for (auto const& n : networks)
    if (auto p = net::parse_network(n)) networks_.push_back(*p);
}

bool address_policy::host_listed(std::string const& host) const {
  std::string lower = host;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(hosts_.begin(), hosts_.end(), lower) != hosts_.end();
}

bool address_policy::allows(asio::ip::address const& a, std::uint16_t port) const {
  auto bytes = as_v6_bytes(a.is_v6() && a.to_v6().is_v4_mapped()
                               ? asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()))
                               : a);
  return net::contains(networks_, bytes) || (is_public(a) && port == https_port);
}

std::optional<https_url> parse_https_url(std::string_view url, std::string& why) {
  if (url.size() > max_endpoint_bytes) return why = "longer than 1024 bytes", std::nullopt;
  for (unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f) return why = "only printable ASCII without spaces", std::nullopt;
  constexpr std::string_view scheme = "https://";
  if (url.size() < scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), url.begin(), [](char a, char b) { return a == std::tolower(b); }))
    return why = "must be an https:// URL", std::nullopt;
  auto rest = url.substr(scheme.size());
  auto end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) return why = "must not carry user information", std::nullopt;
  if (url.find('#') != std::string_view::npos) return why = "must not have a fragment", std::nullopt;
  https_url out;
  std::string_view host = authority, port;
  if (!authority.empty() && authority[0] == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return why = "an unclosed [", std::nullopt;
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return why = "garbage after ]", std::nullopt;
      port = after.substr(1);
    }
    boost::system::error_code ec;
    asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return why = "not an IPv6 address in []", std::nullopt;
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return why = "has no host", std::nullopt;
  if (port.data() != nullptr && !port.empty()) {
    unsigned p = 0;
    auto [pend, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || pend != port.data() + port.size() || p == 0 || p > 65535)
      return why = "has an invalid port", std::nullopt;
    out.port = static_cast<std::uint16_t>(p);
  }
  out.host = std::string(host);
  std::transform(out.host.begin(), out.host.end(), out.host.begin(), [](unsigned char c) { return std::tolower(c); });
  // RFC 6454's origin, as VAPID's audience: lower case, no default port.
  bool v6 = out.host.find(':') != std::string::npos;
  out.origin =
      "https://" + (v6 ? "[" + out.host + "]" : out.host) + (out.port == 443 ? "" : ":" + std::to_string(out.port));
  out.target = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (out.target[0] == '?') out.target.insert(0, "/");
  return out;
}

namespace {

// The addresses of the URL's host that may be connected to; `why` when there are none.
asio::awaitable<std::vector<tcp::endpoint>> allowed_endpoints(address_policy const& policy, name_resolver& dns,
                                                              https_url const& url, std::chrono::milliseconds timeout,
                                                              std::string& why, bool& forbidden, bool all_must_pass) {
  std::vector<tcp::endpoint> out;
  boost::system::error_code literal_error;
  auto literal = asio::ip::make_address(url.host, literal_error);
  bool listed = policy.host_listed(url.host);
  if (!literal_error) {
    if (listed || policy.allows(literal, url.port))
      out.emplace_back(literal, url.port);
    else
      why = "the address " + url.host + " is not public", forbidden = true;
    co_return out;
  }
  std::string host = url.host;  // named: no temporaries inside co_await (GCC 12)
  auto found = co_await dns.resolve(host, timeout);
  if (found.addresses.empty()) {  // not a refusal: the name may resolve later (a push is tried again)
    why = "cannot resolve " + url.host + ": " + found.error;
    co_return out;
  }
  for (auto const& a : found.addresses) {
    if (listed || policy.allows(a, url.port)) {
      out.emplace_back(a, url.port);
    } else {
      why = url.host + " resolves to " + a.to_string() + ", which is not public";
      forbidden = true;
      if (all_must_pass) {
        out.clear();
        co_return out;
      }
    }
  }
  if (!out.empty()) forbidden = false;
  co_return out;
}

}  // namespace

asio::awaitable<std::string> check_endpoint(address_policy const& policy, name_resolver& dns, https_url url,
                                            std::chrono::milliseconds timeout) {
  std::string why;
  bool forbidden = false;
  auto allowed = co_await allowed_endpoints(policy, dns, url, timeout, why, forbidden, true);
  if (!allowed.empty()) co_return std::string();
  if (url.port != https_port && !policy.host_listed(url.host))
    co_return "port " + std::to_string(url.port) + " of " + url.host + " is not allowed";
  // Told to whoever registers the endpoint: never the addresses a name resolves to here,
  // nor the resolver's words, nor even whether it resolved (any user could otherwise map
  // the node's internal names).
  (void)forbidden;
  co_return url.host + " is not a public address that can be reached now";
}

asio::awaitable<http_answer> post(asio::ssl::context& tls, address_policy const& policy, name_resolver& dns,
                                  https_url const& url, post_request request, timeouts limits) {
  http_answer answer;
  try {
    auto ex = co_await asio::this_coro::executor;
    // One connect timeout for the lookup and the connection together.
    auto const connected_by = std::chrono::steady_clock::now() + limits.connect;
    auto endpoints =
        co_await allowed_endpoints(policy, dns, url, limits.connect, answer.error, answer.forbidden, false);
    if (endpoints.empty()) {
      if (answer.error.empty()) answer.error = url.host + " has no address";
      if (answer.forbidden) {
        boost::system::error_code e;
        asio::ip::make_address(url.host, e);
        answer.forbidden_for_good =
            !e || (url.port != https_port && !policy.host_listed(url.host) && !policy.lists_networks());
      }
      co_return answer;
    }
    beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
    bool literal = false;
    {
      boost::system::error_code e;
      asio::ip::make_address(url.host, e);
      literal = !e;
    }
    if (!literal) SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str());
    stream.set_verify_mode(asio::ssl::verify_peer);
    stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
    auto& tcp_layer = beast::get_lowest_layer(stream);
    tcp_layer.expires_at(connected_by);
    auto [cec, connected] = co_await tcp_layer.async_connect(endpoints, tuple_awaitable);
    if (cec) {
      answer.error = "connect: " + cec.message();
      co_return answer;
    }
    tcp_layer.expires_after(limits.answer);
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, tuple_awaitable);
    if (hec) {
      answer.error = "TLS: " + hec.message();
      co_return answer;
    }
    http::request<http::string_body> req{http::verb::post, url.target, 11};
    req.set(http::field::host, url.port == 443 ? url.host : url.host + ":" + std::to_string(url.port));
    if (url.host.find(':') != std::string::npos)  // IPv6 literal
      req.set(http::field::host, "[" + url.host + "]" + (url.port == 443 ? "" : ":" + std::to_string(url.port)));
    req.set(http::field::user_agent, "petchat-node");
    req.set(http::field::content_type, request.content_type);
    for (auto const& [name, value] : request.headers) req.set(name, value);
    req.body() = std::move(request.body);
    req.prepare_payload();
    req.keep_alive(false);
    if (request.still_wanted && !request.still_wanted()) {
      answer.withdrawn = true;
      answer.error = "withdrawn before it was sent";
      co_return answer;
    }
    auto [wec, written] = co_await http::async_write(stream, req, tuple_awaitable);
    if (wec) {
      answer.error = "write: " + wec.message();
      co_return answer;
    }
    // Bounded as the parser is: its limits do not cover a chunk's size line or extensions,
    // nor the trailer, and an unbounded buffer would take an endless one whole.
    constexpr std::size_t header_limit = 16 * 1024;
    beast::flat_buffer buffer(header_limit + max_answer_bytes + 4096);
    http::response_parser<http::string_body> parser;
    parser.body_limit(max_answer_bytes);
    parser.header_limit(header_limit);
    auto [rec, read] = co_await http::async_read_header(stream, buffer, parser, tuple_awaitable);
    if (rec) {
      answer.error = "answer: " + rec.message();
      co_return answer;
    }
    answer.status = parser.get().result_int();
    if (auto ra = parser.get().find(http::field::retry_after); ra != parser.get().end())
      answer.retry_after_s = retry_after(ra->value());
    auto [bec, body_read] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
    if (!bec) answer.body = std::move(parser.get().body());  // an oversized or cut body is not needed for the status
    tcp_layer.close();
  } catch (std::exception const& e) {
    answer.status = 0;
    answer.error = e.what();
  }
  co_return answer;
}

}  // namespace petchat::notify::detail
