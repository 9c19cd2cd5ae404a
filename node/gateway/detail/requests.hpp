// The handler's view of a request Beast parsed (http_server.cpp).
#pragma once

#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "base/net/net.hpp"
#include "node/gateway/gateway.hpp"

namespace petchat::gateway::detail {

// Path and query apart, header names in lower case, a header sent on several lines as one
// comma-separated list (RFC 9110, 5.3), and the client's address: the peer's, or from a
// trusted proxy the one it names (net::forwarded_client).
template <typename Header>
request to_request(Header const& req, std::string const& peer, std::vector<net::network> const& trusted_proxies,
                   bool rfc7239) {
  request r;
  r.method = std::string(req.method_string());
  std::string_view target = req.target();
  auto q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
  for (auto const& field : req) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto [it, fresh] = r.headers.try_emplace(std::move(name), field.value());
    if (!fresh) (it->second += ", ") += field.value();
  }
  r.client_address =
      trusted_proxies.empty()
          ? peer
          : net::forwarded_client(peer, r.header(rfc7239 ? "forwarded" : "x-forwarded-for"), rfc7239, trusted_proxies);
  return r;
}

}  // namespace petchat::gateway::detail
